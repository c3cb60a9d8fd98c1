pub mod identity;
pub mod pki;
