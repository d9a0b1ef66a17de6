//! The property tests' generator and oracle: seeded frames (`frames`), mutated as a wire or an
//! attacker would, and an oracle (`oracle`) that reads each frame independently of the
//! datapath and says what the datapath must do with it; `frames6` and `oracle6` for
//! IPv6.
pub mod frames;
pub mod frames6;
pub mod oracle;
pub mod oracle6;
pub mod rng;
