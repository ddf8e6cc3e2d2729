//! Application usages (RFC 4825 §5): descriptors, the registry built from `app-usages/` and
//! `schemas/`, and the Rust constraint hooks that schemas cannot express.

pub mod descriptor;
pub mod hooks;
pub mod registry;

pub use descriptor::{Descriptor, Generated, TreeKind};
pub use registry::{AppUsage, Registry, RegistryError};
