//! SQL for accounts and refresh tokens. One code path for SQLite and PostgreSQL (see
//! `chassis::db` for the rules that make that work).

use chassis::db::{Db, is_unique_violation};
use contracts::events::UserRegistered;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another account has this email.
    #[error("the email is already registered")]
    EmailTaken,
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// A stored row does not parse (a bug or manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A stored account.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Id.
    pub id: Uuid,
    /// Email as given.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// Email as given.
    pub email: &'a str,
    /// Lowercased email.
    pub email_normalized: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
    /// Roles.
    pub roles: &'a [String],
    /// Creation time, ms since the epoch.
    pub now: i64,
}

/// A stored refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// Id.
    pub id: String,
    /// The login it belongs to.
    pub family_id: String,
    /// Owner.
    pub user_id: Uuid,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
    /// Set once exchanged for a newer token.
    pub rotated_at: Option<i64>,
    /// Set once the family was revoked.
    pub revoked_at: Option<i64>,
}

/// A refresh token to store.
#[derive(Debug, Clone)]
pub struct NewRefresh<'a> {
    /// Login it belongs to.
    pub family_id: &'a str,
    /// Owner.
    pub user_id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: &'a str,
    /// Issue time, ms since the epoch.
    pub now: i64,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
}

const USER_COLUMNS: &str = "id, email, name, password_hash, roles, created_at, updated_at";

/// The users database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Creates an account and publishes `users.user.registered` with it; `EmailTaken` if the
    /// normalized email exists.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.insert_user", otel.kind = "client", db.namespace = "users", db.operation.name = "insert_user"))]
    pub async fn insert_user(&self, user: &NewUser<'_>) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO users (id, email, email_normalized, name, password_hash, roles, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(user.id.to_string())
        .bind(user.email)
        .bind(user.email_normalized)
        .bind(user.name)
        .bind(user.password_hash)
        .bind(user.roles.join(","))
        .bind(user.now)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                return Err(StoreError::EmailTaken);
            }
            Err(e) => return Err(e.into()),
        }
        let registered = UserRegistered {
            user_id: user.id.to_string(),
            email: user.email.to_owned(),
            name: user.name.to_owned(),
        };
        chassis::events::publish(&mut tx, crate::SERVICE, &registered).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The account with this normalized email.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.find_by_email", otel.kind = "client", db.namespace = "users", db.operation.name = "find_by_email"))]
    pub async fn find_by_email(
        &self,
        email_normalized: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email_normalized = $1"
        )))
        .bind(email_normalized)
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Failed logins since `since` (ms) for `account` and from `address`: each count, with the
    /// time of the oldest.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.login_failures", otel.kind = "client", db.namespace = "users", db.operation.name = "login_failures"))]
    pub async fn login_failures(
        &self,
        account: &str,
        address: &str,
        since: i64,
    ) -> Result<[(i64, Option<i64>); 2], StoreError> {
        let mut counts = [(0, None); 2];
        for (count, (column, key)) in counts
            .iter_mut()
            .zip([("account", account), ("address", address)])
        {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS failures, MIN(failed_at) AS oldest FROM login_failures \
                 WHERE {column} = $1 AND failed_at > $2"
            )))
            .bind(key)
            .bind(since)
            .fetch_one(self.db.reader())
            .await?;
            *count = (row.try_get("failures")?, row.try_get("oldest")?);
        }
        Ok(counts)
    }

    /// Records a failed login, and forgets failures from before `forget_before` (ms).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.record_login_failure", otel.kind = "client", db.namespace = "users", db.operation.name = "record_login_failure"))]
    pub async fn record_login_failure(
        &self,
        account: &str,
        address: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM login_failures WHERE failed_at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO login_failures (id, account, address, failed_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(account)
        .bind(address)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the failed logins of `account` (it just logged in).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.clear_login_failures", otel.kind = "client", db.namespace = "users", db.operation.name = "clear_login_failures"))]
    pub async fn clear_login_failures(&self, account: &str) -> Result<(), StoreError> {
        self.db
            .execute(sqlx::query("DELETE FROM login_failures WHERE account = $1").bind(account))
            .await?;
        Ok(())
    }

    /// The account with this id.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.find_by_id", otel.kind = "client", db.namespace = "users", db.operation.name = "find_by_id"))]
    pub async fn find_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Replaces name and email of an account; `None` if it does not exist.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.update_profile", otel.kind = "client", db.namespace = "users", db.operation.name = "update_profile"))]
    pub async fn update_profile(
        &self,
        id: Uuid,
        name: &str,
        email: &str,
        email_normalized: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let result = self.db.execute(sqlx::query(
            "UPDATE users SET name = $1, email = $2, email_normalized = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(name)
        .bind(email)
        .bind(email_normalized)
        .bind(now)
        .bind(id.to_string())
        )
        .await;
        match result {
            Ok(done) if done.rows_affected() == 0 => Ok(None),
            Ok(_) => self.find_by_id(id).await,
            Err(e) if is_unique_violation(&e) => Err(StoreError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a refresh token; returns its id.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.insert_refresh", otel.kind = "client", db.namespace = "users", db.operation.name = "insert_refresh"))]
    pub async fn insert_refresh(&self, token: &NewRefresh<'_>) -> Result<String, StoreError> {
        let id = Uuid::now_v7().to_string();
        self.db.execute(sqlx::query(
            "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, issued_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(token.family_id)
        .bind(token.user_id.to_string())
        .bind(token.token_hash)
        .bind(token.now)
        .bind(token.expires_at)
        )
        .await?;
        Ok(id)
    }

    /// The refresh token with this hash.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.find_refresh", otel.kind = "client", db.namespace = "users", db.operation.name = "find_refresh"))]
    pub async fn find_refresh(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, family_id, user_id, expires_at, rotated_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|r| {
            Ok(RefreshRecord {
                id: r.try_get("id")?,
                family_id: r.try_get("family_id")?,
                user_id: parse_id(&r.try_get::<String, _>("user_id")?)?,
                expires_at: r.try_get("expires_at")?,
                rotated_at: r.try_get("rotated_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .transpose()
    }

    /// Exchanges token `old_id` for `new`, atomically. `false` if `old_id` was already rotated
    /// or revoked (a concurrent refresh won, or the token is being replayed).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.rotate_refresh", otel.kind = "client", db.namespace = "users", db.operation.name = "rotate_refresh"))]
    pub async fn rotate_refresh(
        &self,
        old_id: &str,
        new: &NewRefresh<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let rotated = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1 WHERE id = $2 AND rotated_at IS NULL AND revoked_at IS NULL",
        )
        .bind(new.now)
        .bind(old_id)
        .execute(&mut *tx)
        .await?;
        if rotated.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, issued_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(new.family_id)
        .bind(new.user_id.to_string())
        .bind(new.token_hash)
        .bind(new.now)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes every live token of a login; returns how many.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "users.revoke_family", otel.kind = "client", db.namespace = "users", db.operation.name = "revoke_family"))]
    pub async fn revoke_family(&self, family_id: &str, now: i64) -> Result<u64, StoreError> {
        let done = self.db.execute(sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        )
        .await?;
        Ok(done.rows_affected())
    }
}

fn parse_id(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|_| StoreError::Corrupt(format!("id {raw:?}")))
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let roles: String = row.try_get("roles")?;
    Ok(UserRecord {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
