//! Accounts: users (argon2id password hashes), bearer tokens (random,
//! stored as SHA-256 hashes with an expiry), registration and login.
//!
//! May call: `store` only.
//! Invariants: a token is never stored in clear; an unknown user costs a
//! login the same time as a wrong password; admins are made only by an
//! operator (`appliance user add --role admin`), never by registration.

use std::sync::Arc;

use api::wire::*;
use api::{ApiError, ApiResult};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, rfc3339, Catalog};
use crate::store::{new_id, sha256_hex};
use settings::Config;

/// The accounts domain's service: what `api::Accounts` runs on.
pub struct Accounts {
    config: Arc<Config>,
    catalog: Catalog,
}

/// The password's Argon2 hash, under the one rule for passwords (10–1024
/// characters), for `create_user` and `set_password`.
async fn hash_password(password: &str) -> Result<String> {
    if !(10..=1024).contains(&password.chars().count()) {
        return Err(ApiError::validation("passwords are 10–1024 characters")
            .with_details(serde_json::json!({"field": "password"}))
            .into());
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt =
            SaltString::from_b64(&salt_b64()?).map_err(|e| Error::Task(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Task(format!("hashing a password: {e}")))
    })
    .await?
}

impl Accounts {
    pub fn new(config: Arc<Config>, catalog: Catalog) -> Self {
        Self { config, catalog }
    }

    /// The user whose password this is, or `None` (unknown user and wrong
    /// password cost the same).
    async fn check_password(&self, req: LoginRequest) -> ApiResult<Option<cat::UserRow>> {
        let name = req.username.clone();
        let user = self
            .catalog
            .call(move |c| cat::user_by_name(c, &name))
            .await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = req.password;
        let ok = tokio::task::spawn_blocking(move || {
            // An unknown user costs the same as a wrong password.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| {
                let salt = SaltString::encode_b64(b"appliance-dummy!").expect("16-byte salt");
                Argon2::default()
                    .hash_password(b"not a password", &salt)
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            });
            let stored = hash.as_deref().unwrap_or(dummy);
            let parsed =
                PasswordHash::new(stored).map_err(|e| Error::Task(format!("stored hash: {e}")))?;
            Ok::<_, Error>(
                hash.is_some()
                    && Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
            )
        })
        .await
        .map_err(Error::from)??;
        Ok(user.filter(|_| ok))
    }

    pub async fn issue_token(&self, user: &cat::UserRow) -> Result<AuthResponse> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| Error::Task(format!("no randomness: {e}")))?;
        let token = hex::encode(raw);
        let hash = sha256_hex(token.as_bytes());
        let expires = now_ms() + (self.config.auth.token_ttl_hours as i64) * 3_600_000;
        let user_id = user.id.clone();
        self.catalog
            .call(move |c| cat::insert_token(c, &hash, &user_id, expires))
            .await?;
        Ok(AuthResponse {
            token,
            expires_at: rfc3339(expires),
            user: user_wire(user),
        })
    }

    /// Creates a user (also used by `appliance user add`).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<cat::UserRow> {
        validate_username(username)?;
        let hash = hash_password(password).await?;
        let user = cat::UserRow {
            id: new_id(),
            username: username.to_owned(),
            password_hash: hash,
            role: role.as_str().to_owned(),
            created_at: now_ms(),
        };
        let row = user.clone();
        let inserted = self
            .catalog
            .call(move |c| cat::insert_user(c, &row))
            .await?;
        if !inserted {
            return Err(ApiError::conflict(format!("username `{username}` is taken")).into());
        }
        Ok(user)
    }

    /// Changes a user's password (`appliance user passwd`), under the rule
    /// `create_user` applies, and revokes every token issued before: the
    /// usual reason to change a password is that someone else knows it.
    /// Returns how many tokens were revoked.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<usize> {
        let hash = hash_password(password).await?;
        let name = username.to_owned();
        let revoked = self
            .catalog
            .call(move |c| cat::set_password_revoking_tokens(c, &name, &hash))
            .await?;
        revoked.ok_or_else(|| ApiError::not_found(format!("user `{username}`")).into())
    }
}

impl api::Accounts for Accounts {
    async fn register(&self, req: RegisterRequest) -> ApiResult<AuthResponse> {
        if !self.config.auth.open_registration {
            return Err(ApiError::forbidden("registration is closed on this box"));
        }
        let role = req.role.unwrap_or(Role::Viewer);
        if role == Role::Admin {
            return Err(ApiError::forbidden(
                "admins are created by an operator (`appliance user add --role admin`)",
            ));
        }
        let user = self.create_user(&req.username, &req.password, role).await?;
        Ok(self.issue_token(&user).await?)
    }

    async fn login(&self, req: LoginRequest) -> ApiResult<AuthResponse> {
        match self.check_password(req).await? {
            Some(u) => Ok(self.issue_token(&u).await?),
            None => Err(ApiError::unauthorized("wrong username or password")),
        }
    }

    async fn verify_password(&self, req: LoginRequest) -> ApiResult<Principal> {
        match self.check_password(req).await? {
            Some(u) => Ok(Principal {
                role: Role::parse(&u.role).unwrap_or(Role::Viewer),
                user_id: u.id,
            }),
            None => Err(ApiError::unauthorized("wrong username or password")),
        }
    }

    async fn authenticate(&self, token: &str) -> ApiResult<Principal> {
        let hash = sha256_hex(token.as_bytes());
        let user = self
            .catalog
            // Every signed-in request asks this: on the reader pool, never
            // queued behind the single writer's transactions.
            .read(move |c| cat::user_by_token(c, &hash))
            .await?;
        match user {
            Some(u) => Ok(Principal {
                user_id: u.id,
                role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            }),
            None => Err(ApiError::unauthorized(
                "the bearer token is unknown or expired",
            )),
        }
    }

    async fn get_user(&self, id: &str) -> ApiResult<User> {
        let id = id.to_owned();
        match self.catalog.call(move |c| cat::user_by_id(c, &id)).await? {
            Some(u) => Ok(user_wire(&u)),
            None => Err(ApiError::not_found("user")),
        }
    }
}

fn user_wire(u: &cat::UserRow) -> User {
    User {
        id: u.id.clone(),
        username: u.username.clone(),
        role: Role::parse(&u.role).unwrap_or(Role::Viewer),
        created_at: rfc3339(u.created_at),
    }
}

fn salt_b64() -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Task(format!("no randomness: {e}")))?;
    Ok(SaltString::encode_b64(&salt)
        .map_err(|e| Error::Task(format!("salt: {e}")))?
        .as_str()
        .to_owned())
}

fn validate_username(name: &str) -> Result<()> {
    let ok = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(
            ApiError::validation("usernames are 3–32 characters: letters, digits, `_`, `.`, `-`")
                .with_details(serde_json::json!({"field": "username"}))
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_validated() {
        assert!(validate_username("ann").is_ok());
        assert!(validate_username("a/b").is_err());
        assert!(validate_username("ab").is_err());
    }
}
