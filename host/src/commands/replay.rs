//! `wasmnode replay`: re-runs a deterministic job from its receipt and
//! checks that it produces what the receipt names.

use super::receipt::{key, read_capped};
use super::{Printed, load_config, usage};
use crate::cli::ReplayArgs;
use crate::job::JobRequest;
use crate::node::Access;
use crate::receipts::verify::{self, Verified};
use crate::receipts::{OUTPUT_SUBJECT, input_digest, sha256};
use crate::store::JobRecord;
use serde_json::Value;
use std::path::Path;
use wasmnode_runtime::{ComponentSource, RunOptions, Runtime, TaskSpec, WasmRuntime};

/// Re-runs the job of `args.receipt` and compares.
pub async fn execute(config_file: Option<&Path>, args: ReplayArgs) -> anyhow::Result<Printed> {
    let key = key(config_file, args.key.as_deref(), &args.node)?;
    let verified = match verify::open(&read_capped(&args.receipt)?, &key) {
        Ok(verified) => verified,
        Err(e) => return Ok(refused(&format!("the receipt does not verify: {e}"))),
    };
    let input = std::fs::read(&args.input)
        .map_err(|e| usage(format!("--input {}: {e}", args.input.display())))?;
    let input: Value = serde_json::from_slice(&input)
        .map_err(|e| usage(format!("--input {}: not JSON: {e}", args.input.display())))?;
    let task = match task(&verified, input, args.component.as_deref()) {
        Ok(task) => task,
        Err(why) => return Ok(refused(&why)),
    };
    let config = load_config(config_file, &args.node.flags())?;
    let llm = std::sync::Arc::new(wasmnode_runtime::llm::LlmExecutor::new(
        config.llm_settings(),
    )?);
    let router = crate::node::router(&config, Access::Local, None, llm).await?;
    let result = router.run(task, RunOptions::default()).await;
    let predicate = &verified.statement["predicate"];
    let ran = match &result {
        Ok(outcome) => outcome.metrics.ran.clone(),
        Err(failure) => failure.metrics.as_ref().and_then(|m| m.ran.clone()),
    };
    if let (Some(ran), Some(signed)) = (&ran, predicate["ran"]["digest"].as_str())
        && ran != signed
    {
        return Ok(refused(&format!(
            "a different component ran: {ran}, the receipt names {signed}"
        )));
    }
    let job = verified.job_id();
    match result {
        Ok(outcome) => {
            let bytes = serde_json::to_vec(&outcome.output).expect("JSON values serialize");
            match verified.check(OUTPUT_SUBJECT, &sha256(&bytes)) {
                Ok(()) if verified.state() == "finished" => {
                    super::out(&format!(
                        "reproduced: job {job}'s output (sha256 {})\n",
                        sha256(&bytes)
                    ));
                    Ok(Printed { status: 0 })
                }
                Ok(()) => Ok(refused(&format!(
                    "the replay finished, but the job ended {}",
                    verified.state()
                ))),
                Err(e) => Ok(refused(&format!("not reproduced: {e}"))),
            }
        }
        Err(failure) => {
            let code = predicate["outcome"]["error_code"].as_str();
            if code == Some(failure.kind.code()) {
                super::out(&format!(
                    "reproduced: job {job} failed the same way ({})\n",
                    failure.kind.code()
                ));
                Ok(Printed { status: 0 })
            } else {
                Ok(refused(&format!(
                    "the replay failed: {}: {} (the job ended {}{})",
                    failure.kind.code(),
                    failure.message,
                    verified.state(),
                    code.map(|c| format!(" with {c}")).unwrap_or_default()
                )))
            }
        }
    }
}

/// Prints why nothing was reproduced: exit status 1.
fn refused(why: &str) -> Printed {
    super::err(&format!("replay failed: {why}\n"));
    Printed { status: 1 }
}

/// The task to re-run: the job document given, whose digest must be the
/// receipt's, run deterministically with the receipt's seed.
fn task(verified: &Verified, input: Value, component: Option<&str>) -> Result<TaskSpec, String> {
    let signed = &verified.statement["predicate"]["input"];
    let Some(seed) = signed["deterministic"]["seed"].as_u64() else {
        return Err(format!(
            "job {} did not run in deterministic mode; its output need not repeat",
            verified.job_id()
        ));
    };
    let mut request: JobRequest =
        serde_json::from_value(input).map_err(|e| format!("--input is not a job document: {e}"))?;
    // Digested as the node stored it: secret values withheld.
    crate::secrets::withhold(&mut request.runtime.secrets);
    let (_, hash) = JobRecord::canonical(&request);
    let digest = input_digest(&hash);
    if signed["digest"] != digest.as_str() {
        return Err(format!(
            "--input is not the job's document: its digest is {digest}, the receipt's {}",
            signed["digest"]
        ));
    }
    let mut task = request.into_task();
    if let Some(reference) = component {
        let source = ComponentSource::parse(reference);
        match &mut task.runtime {
            Runtime::Wasm(wasm) => wasm.component = source,
            _ => task.runtime = Runtime::Wasm(WasmRuntime::new(source)),
        }
    }
    task.deterministic = Some(seed);
    Ok(task)
}
