//! How many live channels the box takes: each channel reserves its share of
//! the CPU's live encoding capacity (`live.cpu_units_per_core` × cores, in
//! units of one 720p30 rung) for as long as it runs, like a transcode job
//! holds its reservation; one that does not fit is refused with the reason.

use std::collections::HashMap;

use parking_lot::Mutex;

/// One 720p30 rung.
const UNIT_PIXELS: f64 = 1280.0 * 720.0;
/// Decoding the camera, per channel.
const DECODE_UNITS: f64 = 0.25;

/// The CPU share a channel reserves for `work` (its rungs as the inventory
/// sees them, `media::live::workload`) under `placement`: all of it on the
/// CPU; NVDEC takes the decode off the CPU, NVENC the encodes (scaling on
/// the GPU costs the CPU a download per rung at most, counted with the
/// encode it feeds).
pub fn units_placed(work: &hardware::Workload, placement: hardware::Placement) -> f64 {
    let decode = if placement.decode == hardware::Engine::Cpu {
        DECODE_UNITS
    } else {
        0.0
    };
    let encode = if placement.encode == hardware::Engine::Cpu {
        work.rungs
            .iter()
            .map(|&(w, h)| f64::from(w) * f64::from(h) / UNIT_PIXELS)
            .sum::<f64>()
    } else {
        0.0
    };
    decode + encode
}

pub struct Capacity {
    total: f64,
    held: Mutex<HashMap<String, f64>>,
}

impl Capacity {
    pub fn new(units_per_core: f64, cores: usize) -> Self {
        Self {
            total: units_per_core * cores as f64,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves `units` for channel `id` (again: its old share is replaced),
    /// or says why not.
    pub fn reserve(&self, id: &str, units: f64) -> Result<(), String> {
        let mut held = self.held.lock();
        let others: f64 = held.iter().filter(|(k, _)| *k != id).map(|(_, v)| v).sum();
        if others + units > self.total + 1e-9 {
            return Err(format!(
                "this channel needs {units:.2} units of live encoding capacity (one unit = one 720p30 rung); \
                 {others:.2} of the box's {:.2} are held by {} running channel(s) \
                 (live.cpu_units_per_core; stop a channel or ask for fewer rungs)",
                self.total,
                held.keys().filter(|k| *k != id).count()
            ));
        }
        held.insert(id.to_owned(), units);
        Ok(())
    }

    pub fn release(&self, id: &str) {
        self.held.lock().remove(id);
    }

    /// (held, total), for metrics.
    pub fn usage(&self) -> (f64, f64) {
        // A fold from +0: `sum` of nothing is -0, which /metrics printed.
        (
            self.held.lock().values().fold(0.0, |a, b| a + b),
            self.total,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ladder_costs_about_two_units() {
        let u = units_placed(
            &media::live::workload(&[720, 480, 360]),
            hardware::Placement::CPU,
        );
        assert!((u - 1.94).abs() < 0.02, "{u}");
        // NVDEC + CPU encode (an H200): the decode is off the CPU.
        let nvdec = hardware::Placement {
            decode: hardware::Engine::Nvidia(0),
            scale: hardware::Engine::Nvidia(0),
            encode: hardware::Engine::Cpu,
        };
        assert!(
            (units_placed(&media::live::workload(&[720, 480, 360]), nvdec) - (u - 0.25)).abs()
                < 1e-9
        );
        assert_eq!(
            media::live::workload(&[720, 360]).rungs,
            vec![(1280, 720), (640, 360)]
        );
    }

    #[test]
    fn a_channel_that_does_not_fit_is_refused_with_the_numbers() {
        let cap = Capacity::new(2.0, 2);
        let u = units_placed(
            &media::live::workload(&[720, 480, 360]),
            hardware::Placement::CPU,
        );
        cap.reserve("a", u).unwrap();
        cap.reserve("b", u).unwrap();
        let why = cap.reserve("c", u).unwrap_err();
        assert!(why.contains("2 running channel"), "{why}");
        assert!(why.contains("4.00"), "{why}");
        // Reserving again for the same channel replaces its share.
        cap.reserve("a", u).unwrap();
        cap.release("b");
        cap.reserve("c", u).unwrap();
        let (held, total) = cap.usage();
        assert!((held - 2.0 * u).abs() < 1e-9 && total == 4.0);
    }
}
