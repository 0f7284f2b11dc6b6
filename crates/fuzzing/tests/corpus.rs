//! Every fuzz target on stable, in the normal suite: its seed corpus and the inputs that once found bugs
//! (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`), then deterministic mutations of them, so that a
//! regression shows up without nightly or libFuzzer. Long coverage-guided runs: `fuzz/README.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// Mutations per target: enough to walk the parsers' error paths, a few seconds in a debug build.
const MUTATIONS: usize = 20_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            out.push(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
    }
    out
}

/// libFuzzer's simplest moves: flip, insert, delete, duplicate a slice, splice two inputs.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let at = if out.is_empty() {
            0
        } else {
            rng.gen_range(0..out.len())
        };
        match rng.gen_range(0..5) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.gen_range(0..8),
            1 => out.insert(at, rng.r#gen()),
            2 if !out.is_empty() => {
                out.remove(at);
            }
            3 if !out.is_empty() => {
                let end = rng.gen_range(at..=out.len());
                let slice = out[at..end].to_vec();
                out.splice(at..at, slice);
            }
            _ => {
                let from = if other.is_empty() {
                    0
                } else {
                    rng.gen_range(0..other.len())
                };
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

#[test]
fn every_fuzz_target_survives_its_corpus_its_regressions_and_mutations_of_them() {
    for (name, target) in fuzzing::TARGETS {
        let seeds = inputs(name);
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} has no seed inputs");
        for seed in &seeds {
            target(seed);
        }
        let mut rng = StdRng::seed_from_u64(0x0062_756c_7761_726b);
        for _ in 0..MUTATIONS {
            let a = &seeds[rng.gen_range(0..seeds.len())];
            let b = &seeds[rng.gen_range(0..seeds.len())];
            target(&mutate(&mut rng, a, b));
        }
    }
}

#[test]
fn every_fuzz_target_has_a_cargo_fuzz_binary() {
    for (name, _) in fuzzing::TARGETS {
        let path = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.contains(&format!("fuzzing::{name}(")),
            "{} must call fuzzing::{name}",
            path.display()
        );
    }
}
