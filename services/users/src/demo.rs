//! The demo accounts `bazaar up` seeds on a fresh data directory, so a newcomer can sign in at
//! once. They exist only where `users.seed_demo` is on; never turn it on in production.

use crate::api::AppState;
use crate::api::UsersError;
use crate::api::auth::create_account;
use crate::domain::{DisplayName, Email, Password};

/// A seeded account.
#[derive(Debug, Clone, Copy)]
pub struct DemoAccount {
    /// Sign-in email.
    pub email: &'static str,
    /// Password.
    pub password: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Whether it is an administrator.
    pub admin: bool,
}

/// A customer.
pub const CUSTOMER: DemoAccount = DemoAccount {
    email: "demo@bazaar.example",
    password: "shop-till-you-drop",
    name: "Demo Customer",
    admin: false,
};
/// An administrator.
pub const ADMIN: DemoAccount = DemoAccount {
    email: "admin@bazaar.example",
    password: "keys-to-the-shop",
    name: "Demo Admin",
    admin: true,
};

/// Creates the demo accounts that do not exist yet. Safe to run on every start and from several
/// replicas at once: an account someone else just created is left as it is.
pub async fn seed(state: &AppState) -> Result<(), UsersError> {
    for account in [CUSTOMER, ADMIN] {
        let invalid =
            |e: String| UsersError::internal(format!("demo account {}: {e}", account.email));
        let email = Email::parse(account.email).map_err(invalid)?;
        let password = Password::parse(account.password, Some(&email)).map_err(invalid)?;
        let name = DisplayName::parse(account.name).map_err(invalid)?;
        if state
            .store
            .find_by_email(&email.normalized())
            .await?
            .is_some()
        {
            continue;
        }
        let roles: &[&str] = if account.admin {
            &[contracts::auth::ROLE_ADMIN]
        } else {
            &[]
        };
        match create_account(state, &email, &password, &name, roles).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, email = account.email, "seeded a demo account")
            }
            Err(UsersError::EmailTaken) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
