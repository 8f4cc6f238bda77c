//! `appliance doctor`: what this host offers and what each missing piece
//! costs.

use std::path::PathBuf;
use std::process::ExitCode;

use super::report;
use crate::ops::doctor;
use settings as config;

pub fn run(config: Option<PathBuf>, json: bool) -> ExitCode {
    let config = match config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let r = doctor::run(&config, hardware::Inventory::discover());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("serialisable")
        );
    } else {
        print!("{}", r.render());
    }
    if r.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
