//! Upload bookkeeping from client-chosen numbers (file size, chunk index):
//! the chunks of any file add up to exactly its size, none is larger than
//! the chunk size, none is empty, and a chunk number past the end is a 400,
//! never an overflow.
#![no_main]

use api::chunks::{expected_size, total};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (u64, u32, u32)| {
    let (file_size, chunk_kib, n) = data;
    // The server's chunk sizes are 64 KiB – 256 MiB; any positive size is
    // fair game for the arithmetic.
    let chunk_size = u64::from(chunk_kib.max(1));
    let Some(t) = total(file_size, chunk_size) else {
        return;
    };
    assert!(t >= 1);
    match expected_size(file_size, chunk_size, t, n) {
        Ok(size) => {
            assert!(n < t);
            assert!(size >= 1 && size <= chunk_size, "{size} of {chunk_size}");
        }
        Err(_) => assert!(n >= t),
    }
    // Small uploads: walk every chunk and check the sum.
    if t <= 4096 {
        let sum: u64 = (0..t)
            .map(|k| expected_size(file_size, chunk_size, t, k).unwrap())
            .sum();
        assert_eq!(sum, file_size);
    }
});
