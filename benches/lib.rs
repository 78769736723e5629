//! Criterion benchmarks for Hearth; each file under `benches/benches/` is one
//! suite. Real-model benchmarks find the model as the tests do
//! (`hearth_tests::model_path`).
