//! Run-time instruction-set choice.

use hearth_kernels::ops::Isa;

#[test]
fn detect_picks_the_best_available_and_caches_it() {
    let all = Isa::all();
    assert_eq!(all[0], Isa::Scalar, "scalar is always available, first");
    assert_eq!(Isa::detect(), *all.last().unwrap());
    assert_eq!(Isa::detect(), Isa::detect());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_is_offered_exactly_when_the_cpu_has_it() {
    let has = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    assert_eq!(Isa::all().iter().any(|i| i.name() == "avx2"), has);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_is_offered_exactly_when_the_cpu_has_it() {
    let has = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let names: Vec<_> = Isa::all().iter().map(|i| i.name()).collect();
    assert_eq!(names.contains(&"avx512"), has, "{names:?}");
    if has {
        assert_eq!(Isa::detect().name(), "avx512");
    }
}
