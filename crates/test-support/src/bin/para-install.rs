//! `para-install`: makes sure the `para` 0.6.0 miner the tests run is built and cached (see
//! `test_support::para`), printing what it does and the binary's path. CI (`.ci/run`) runs it
//! before the tests so that the build (about 12 minutes on 2 cores, once per cache) happens
//! outside them.

fn main() -> anyhow::Result<()> {
    let path = test_support::para::install()?;
    println!("{}", path.display());
    Ok(())
}
