//! `aya::Pod` for the map key and value types, tied to bytemuck's derive so the compiler,
//! not a comment, checks that a type has no padding and no invalid bit patterns.

/// `unsafe impl aya::Pod` (under the `user` feature) for each type, next to a
/// compile-time assertion that it is `bytemuck::Pod`: a padding hole breaks the build.
macro_rules! aya_pod {
    ($($ty:ty),+ $(,)?) => {
        $(
            const _: () = $crate::pod::assert_pod::<$ty>();
            // SAFETY: aya::Pod asks for a Copy type every byte pattern of which is a valid
            // value, with no padding to leak; bytemuck's Pod derive proved exactly that
            // for this type (the assertion above).
            #[cfg(feature = "user")]
            unsafe impl aya::Pod for $ty {}
        )+
    };
}
pub(crate) use aya_pod;

/// Compiles only for `T: bytemuck::Pod`.
pub(crate) const fn assert_pod<T: bytemuck::Pod>() {}

/// `bytemuck::Pod` (and `aya::Pod`) for one instantiation of a generic map type, whose
/// derive cannot check padding: the size given, the sum of its fields' sizes, is
/// asserted at compile time, so a padding hole still breaks the build.
macro_rules! pod_generic {
    ($($ty:ty = $fields:expr),+ $(,)?) => {
        $(
            const _: () = assert!(
                core::mem::size_of::<$ty>() == $fields,
                "padding in a generic map type"
            );
            // SAFETY: a repr(C) struct of Pod fields with no padding (asserted above).
            unsafe impl bytemuck::Zeroable for $ty {}
            // SAFETY: as above.
            unsafe impl bytemuck::Pod for $ty {}
            // SAFETY: as above.
            #[cfg(feature = "user")]
            unsafe impl aya::Pod for $ty {}
        )+
    };
}
pub(crate) use pod_generic;
