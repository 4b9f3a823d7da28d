pub mod list;
pub mod ops;
