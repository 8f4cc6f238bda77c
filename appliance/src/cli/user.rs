//! `appliance user add`: creates an account directly in the catalog (the
//! only way to make an admin); the password is read from stdin.

use std::path::PathBuf;
use std::process::ExitCode;

use api::wire::Role;

use super::{report, runtime};
use settings as config;

pub fn add(config: Option<PathBuf>, username: &str, role: Role) -> ExitCode {
    let config = match config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    // From stdin only: a password in argv or the environment leaks into
    // process listings and shell history.
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        return report(&e);
    }
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return report(&e),
    };
    match rt.block_on(super::serve::add_user(config, username, &password, role)) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}
