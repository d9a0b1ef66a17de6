//! Seeded randomness for the property tests: `SplitMix64`, and the seed and sizes read
//! from the environment.

pub fn env_u64(name: &str, default: u64) -> u64 {
    let Ok(s) = std::env::var(name) else {
        return default;
    };
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .unwrap_or_else(|e| panic!("{name}={s}: {e} (a decimal or 0x-prefixed hex number)"))
}

/// `SplitMix64`: tiny, seedable, and its stream never changes with a dependency update.
pub struct Rng(pub u64);

impl Rng {
    pub fn word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.word() % n as u64) as usize
    }
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    pub fn u8(&mut self) -> u8 {
        self.word() as u8
    }
    pub fn u16(&mut self) -> u16 {
        self.word() as u16
    }
    pub fn u32(&mut self) -> u32 {
        self.word() as u32
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
    /// Fewer than `n` random bytes.
    pub fn upto(&mut self, n: usize) -> Vec<u8> {
        let len = self.below(n);
        self.bytes(len)
    }
    pub fn mac(&mut self) -> [u8; 6] {
        let mut m = [0; 6];
        for b in &mut m {
            *b = self.u8();
        }
        m
    }
}
