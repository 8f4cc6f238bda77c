//! `appliance user add|list|passwd`: accounts, directly in the catalog
//! (`add` is the only way to make an admin). Passwords are read from stdin,
//! never from argv or the environment.

use std::path::PathBuf;
use std::process::ExitCode;

use api::wire::Role;

use super::{report, runtime};
use crate::accounts::Accounts;
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, rfc3339, Catalog};
use settings as config;

pub fn add(config: Option<PathBuf>, username: &str, role: Role) -> ExitCode {
    let config = match config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let password = match read_password() {
        Ok(p) => p,
        Err(e) => return report(&e),
    };
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

/// `appliance user list`: every account with its role, creation time and
/// how many videos it has.
pub fn list(config: Option<PathBuf>, json: bool) -> ExitCode {
    let run = || -> Result<()> {
        let config = config::Config::load(config.as_deref())?;
        let catalog = existing_catalog(&config)?;
        let rows = runtime()
            .map_err(Error::io("starting", "the runtime"))?
            .block_on(catalog.read(cat::users_with_video_counts))?;
        if json {
            let items: Vec<_> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.user.id,
                        "username": r.user.username,
                        "role": r.user.role,
                        "createdAt": rfc3339(r.user.created_at),
                        "videos": r.videos,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "items": items }));
            return Ok(());
        }
        let mut table = vec![[
            "USERNAME".to_owned(),
            "ROLE".to_owned(),
            "CREATED (UTC)".to_owned(),
            "VIDEOS".to_owned(),
        ]];
        table.extend(rows.iter().map(|r| {
            [
                r.user.username.clone(),
                r.user.role.clone(),
                utc_minutes(r.user.created_at),
                r.videos.to_string(),
            ]
        }));
        print!("{}", columns(&table, &[false, false, false, true]));
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// `appliance user passwd NAME`: a new password from the first line of
/// stdin (the rule `add` applies); every token issued before is revoked.
pub fn passwd(config: Option<PathBuf>, username: &str) -> ExitCode {
    let run = || -> Result<usize> {
        let config = config::Config::load(config.as_deref())?;
        let catalog = existing_catalog(&config)?;
        let password = read_password().map_err(Error::io("reading", "the password from stdin"))?;
        let accounts = Accounts::new(std::sync::Arc::new(config), catalog);
        runtime()
            .map_err(Error::io("starting", "the runtime"))?
            .block_on(accounts.set_password(username, &password))
    };
    match run() {
        Ok(revoked) => {
            println!("password of `{username}` changed; {revoked} token(s) revoked");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

/// The first line of stdin, without its line ending.
fn read_password() -> std::io::Result<String> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

/// The catalog of the config's data directory, which must already exist:
/// a command that only reads or changes existing rows should not create
/// an empty box in the wrong place because of a typo in the config path.
pub(super) fn existing_catalog(config: &config::Config) -> Result<Catalog> {
    let path = config.storage.data_dir.join("catalog.db");
    if !path.is_file() {
        return Err(Error::Config(format!(
            "no catalog at {} (is this the config `appliance serve` runs with?)",
            path.display()
        )));
    }
    Catalog::open(&path)
}

/// `YYYY-MM-DD HH:MM` in UTC, for tables.
pub(super) fn utc_minutes(ms: i64) -> String {
    let full = rfc3339(ms);
    if let (Some(day), Some(time)) = (full.get(..10), full.get(11..16)) {
        format!("{day} {time}")
    } else {
        full
    }
}

/// Rows as aligned columns, two spaces apart (`right` per column); the
/// last column is not padded.
pub(super) fn columns<const N: usize>(rows: &[[String; N]], right: &[bool; N]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < N {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_do_not_pad_the_last() {
        let rows = [
            ["NAME".to_owned(), "N".to_owned(), "NOTE".to_owned()],
            ["ann".to_owned(), "12".to_owned(), "x".to_owned()],
        ];
        assert_eq!(
            columns(&rows, &[false, true, false]),
            "NAME   N  NOTE\nann   12  x\n"
        );
    }

    #[test]
    fn minutes_in_utc() {
        assert_eq!(utc_minutes(0), "1970-01-01 00:00");
        assert_eq!(utc_minutes(90_061_000), "1970-01-02 01:01");
    }
}
