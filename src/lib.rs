//! graph2aufs: migrate a legacy (pre-0.7) Docker root to the aufs driver layout.
pub mod error;
pub mod generate;
pub mod id;
pub mod initlayer;
pub mod layout;
pub mod legacy;
pub mod migrate;
pub mod names;
pub mod plan;
pub mod record;
pub mod report;
pub mod rollback;
pub mod root;
pub mod sys;
pub mod union;
pub mod verify;
pub mod view;
