//! Who is calling and what they may do: JWT access tokens, opaque refresh
//! tokens, password hashing, the principal and the permission table.

pub mod jwt;
pub mod password;
pub mod permissions;
pub mod principal;

pub use jwt::TokenService;
pub use permissions::Action;
pub use principal::{Caller, Integrator, Principal, Scope};
