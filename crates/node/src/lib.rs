pub mod config_doc;
pub mod identity;
pub mod pki;
