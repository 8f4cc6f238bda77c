//! The arithmetic of a resumable upload, as the API states it: a file of
//! `file_size` bytes in chunks of `chunk_size` has `total` chunks, every
//! one `chunk_size` bytes but the last, which holds the rest.

use crate::error::{ApiError, ApiResult};

/// How many chunks a file of `file_size` bytes takes (`None` if more than
/// `u32::MAX`, or for an empty file or a zero chunk size).
pub fn total(file_size: u64, chunk_size: u64) -> Option<u32> {
    if file_size == 0 || chunk_size == 0 {
        return None;
    }
    u32::try_from(file_size.div_ceil(chunk_size)).ok()
}

/// The exact size chunk `n` must have; a 400 naming the range for a chunk
/// number outside it.
pub fn expected_size(file_size: u64, chunk_size: u64, total: u32, n: u32) -> ApiResult<u64> {
    if n >= total {
        return Err(ApiError::validation(format!(
            "chunk {n} is out of range: this upload has chunks 0–{}",
            total.saturating_sub(1)
        )));
    }
    Ok(if n + 1 == total {
        file_size - chunk_size * u64::from(total - 1)
    } else {
        chunk_size
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_add_up_to_the_file() {
        let t = total(10, 4).unwrap();
        assert_eq!(t, 3);
        let sizes: Vec<u64> = (0..t)
            .map(|n| expected_size(10, 4, t, n).unwrap())
            .collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert!(expected_size(10, 4, t, 3).is_err());
        assert_eq!(total(0, 4), None);
        assert_eq!(total(8, 4), Some(2));
    }
}
