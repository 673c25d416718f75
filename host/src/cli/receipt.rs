//! The node identity and receipt commands' arguments.

use super::NodeArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `wasmnode identity`.
#[derive(Debug, Args)]
#[command(
    after_help = "The node signs a receipt of every job it runs with an ed25519 key kept under the
data directory (identity/node.pem, mode 0600; identity/node.pub.pem beside it).
It is made at the node's first start, or here when there is none yet. A control
plane pins the fingerprint; `wasmnode receipt verify --key` takes the public key."
)]
pub struct IdentityArgs {
    /// Print `{"algorithm", "fingerprint", "public_key"}` as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode receipt`.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Check a job's signed receipt (`GET /jobs/{id}/receipt`) and, given them, its output and files.
    Verify(ReceiptVerifyArgs),
}

/// `wasmnode receipt verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Checks that the receipt is signed by the key, and that each file given is
what the receipt names: --output the output document (`GET /jobs/{id}/result`,
saved as is), --file NAME=PATH an output file (`GET /jobs/{id}/files/NAME`).

Exit status: 0 and one line when everything holds, 1 and the reason when it
does not, 2 when the command line or a key cannot be used."
)]
pub struct ReceiptVerifyArgs {
    /// The receipt (a DSSE envelope, JSON).
    #[arg(value_name = "RECEIPT")]
    pub receipt: PathBuf,
    /// The job's output document, to check against the receipt.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// An output file of the job, by its name in the job's files.
    #[arg(long = "file", value_name = "NAME=PATH")]
    pub files: Vec<String>,
    /// The signing node's public key (PEM); default: this machine's node identity.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode replay`.
#[derive(Debug, Args)]
#[command(
    after_help = "Re-runs a job that ran in deterministic mode (`runtime.deterministic: true`)
here, and checks that it produces the output its receipt names. The receipt is
verified first (with --key, or the identity of the node on this machine).

--input is the job document as submitted; its digest (secret values
withheld, as the node stores it) must be the receipt's input digest.
--component replaces the job's component (say, the same file at another path
here); either way what runs must have the digest the receipt names. Secrets
are not given to a replay.

Exit status: 0 when the output (or the failure) is reproduced, 1 and the
reason when it is not, 2 when the command line, a key or a file cannot be used."
)]
pub struct ReplayArgs {
    /// The receipt (a DSSE envelope, JSON).
    #[arg(value_name = "RECEIPT")]
    pub receipt: PathBuf,
    /// The job document as submitted (JSON).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The component to run: `builtin:NAME` or a `.wasm` file.
    #[arg(long, value_name = "COMPONENT")]
    pub component: Option<String>,
    /// The signing node's public key (PEM); default: this machine's node identity.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}
