//! The `os-tool` command line. Subcommands are the primary form
//! (`os-tool --data-path D list`); `--op NAME` is accepted as well because operators
//! have ceph-objectstore-tool in their fingers (`os-tool --data-path D --op list`), and
//! a few of its op names are aliases (`list-pgs`, `dump-super`, `get-bytes`, ...).
//!
//! Usage errors become the same one-line `os-tool: EINVAL: ...` as every other error.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use ostore_os::Error;

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "os-tool",
    version,
    about = "Inspect and modify an ostore object store offline (like ceph-objectstore-tool)",
    after_help = "Every error is one line on stderr, `os-tool: ERRNO: message`, and the exit \
                  code is the errno value. `--op NAME` works as an alias for the subcommand."
)]
pub struct Cli {
    /// The store's data directory (required).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_path: Option<PathBuf>,

    /// Backend type; detected from the superblock when omitted (mkfs: memstore).
    #[arg(long = "type", global = true, value_name = "TYPE")]
    pub store_type: Option<String>,

    /// Where the journal lives when it is not `<data-path>/journal`.
    #[arg(long, global = true, value_name = "DIR")]
    pub journal_path: Option<PathBuf>,

    /// How single documents are printed (`list` is always one JSON line per object).
    #[arg(long, global = true, value_enum, default_value_t = Format::JsonPretty)]
    pub format: Format,

    /// Log what the store does (replay, checkpoints) to stderr; `RUST_LOG` refines it.
    #[arg(long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Formats an empty store in the data directory (EEXIST if one is there).
    Mkfs,
    /// Shows the superblock: type, fsid, creation time, options.
    #[command(alias = "dump-super")]
    Info,
    /// Applies transactions given as JSON (see docs/TRANSACTIONS.md).
    Apply(ApplyArgs),
    /// Lists the collections.
    #[command(alias = "list-pgs")]
    ListCollections,
    /// Lists objects, one `["cid",{object}]` line each.
    List(ListArgs),
    /// Shows an object's size and allocated bytes.
    Stat(ObjectArgs),
    /// Writes an object's data to stdout, raw.
    #[command(alias = "get-bytes")]
    Read(ReadArgs),
    /// Shows one attr's value.
    #[command(alias = "get-attr")]
    Getattr(GetattrArgs),
    /// Shows every attr.
    #[command(alias = "list-attrs")]
    Getattrs(ObjectArgs),
    /// Shows the omap header and keys.
    Omap(OmapArgs),
    /// Checks the store: replays the journal, walks every collection and object through
    /// the API (order, paging, sizes, attrs, omap), and runs the backend's own checks;
    /// `--deep` also reads every byte and verifies every checksum. Prints a JSON report;
    /// exits non-zero (EUCLEAN) when it finds an error.
    Fsck(FsckArgs),
    /// Repairs what can be repaired without losing committed data, then checks again.
    Repair,
    /// The write-ahead journal: dump it (works on a journal too damaged to mount), or
    /// replay it into the store and checkpoint.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Replaces an object's data with the bytes of a file (or stdin).
    SetBytes(SetBytesArgs),
    /// Sets one attr.
    SetAttr(SetValueArgs),
    /// Removes one attr (ENODATA if it is not there).
    RmAttr(NameArgs),
    /// Lists an object's omap keys, one JSON value per line.
    ListOmap(ObjectArgs),
    /// Shows the value of one omap key (ENOENT if it is not there).
    GetOmap(KeyArgs),
    /// Sets one omap key.
    SetOmap(SetKeyArgs),
    /// Removes one omap key.
    RmOmap(KeyArgs),
    /// Shows the omap header.
    GetOmaphdr(GetValueArgs),
    /// Sets the omap header.
    SetOmaphdr(SetHeaderArgs),
    /// Removes an object (all four parts).
    Remove(ObjectArgs),
    /// Writes collections and their objects to a versioned, checksummed stream file.
    Export(ExportArgs),
    /// Reads an export file into this store (any backend); collections must not exist.
    Import(ImportArgs),
    /// Runs an os-bench workload with the backend of `--type` (default memstore) in
    /// scratch stores under `--data-path`, beside its raw-disk anchor; prints the table.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload (see `os-bench --help`; `all` runs every one).
    #[arg(long, default_value = "small-overwrite")]
    pub workload: String,
    /// Concurrent clients (1 to 1024).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub clients: u16,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Read every byte of every object and verify every checksum.
    #[arg(long)]
    pub deep: bool,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Every batch and entry of every volume (seq, size, the transactions' ops), without
    /// mounting. Exits EUCLEAN after printing when the journal is damaged.
    Dump(JournalDumpArgs),
    /// Replays the journal into the store and checkpoints, without serving.
    Replay,
}

#[derive(Debug, Args)]
pub struct JournalDumpArgs {
    /// Only this volume number.
    #[arg(long, value_name = "N")]
    pub volume: Option<u64>,
    /// Also print every op of every transaction (JSON form).
    #[arg(long)]
    pub ops: bool,
}

/// A value given inline (UTF-8 text, or `{"hex":"..."}`) or read from a file.
#[derive(Debug, Args)]
pub struct ValueSource {
    /// The value: text, or a JSON `{"hex": "..."}` / `{"base64": ...}` form for bytes.
    #[arg(value_name = "VALUE", allow_hyphen_values = true)]
    pub value: Option<String>,
    /// Read the value from this file instead (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "value")]
    pub file: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetBytesArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// The file whose bytes become the object's data (`-` for stdin).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub file: String,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// The attr's name.
    #[arg(value_name = "NAME", allow_hyphen_values = true)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SetValueArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// The attr's name.
    #[arg(value_name = "NAME", allow_hyphen_values = true)]
    pub name: String,
    #[command(flatten)]
    pub value: ValueSource,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// The omap key: text, or `{"hex":"..."}` for binary keys.
    #[arg(value_name = "KEY", allow_hyphen_values = true)]
    pub key: String,
    /// Write the value's bytes to stdout instead of its JSON form (get-omap).
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct SetKeyArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// The omap key: text, or `{"hex":"..."}` for binary keys.
    #[arg(value_name = "KEY", allow_hyphen_values = true)]
    pub key: String,
    #[command(flatten)]
    pub value: ValueSource,
}

#[derive(Debug, Args)]
pub struct GetValueArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// Write the bytes to stdout instead of their JSON form.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct SetHeaderArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    #[command(flatten)]
    pub value: ValueSource,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this collection (repeatable); every collection when omitted.
    #[arg(long, alias = "pgid", value_name = "CID")]
    pub collection: Vec<String>,
    /// The export file to write (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub file: String,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file to read (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub file: String,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// JSON file to read (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "input")]
    pub file: Option<String>,
    /// The same as --file; `-` reads stdin.
    #[arg(value_name = "FILE|-", allow_hyphen_values = true)]
    pub input: Option<String>,
    /// Parse and check against the store's state, but apply nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ObjectArgs {
    /// Collection holding the object (`1.0_head`, `meta`; a pg id `1.0` means
    /// `1.0_head`). Optional when OBJ is a line printed by `list`.
    #[arg(long, alias = "pgid", value_name = "CID")]
    pub collection: Option<String>,
    /// The object: a bare name, a JSON object id, or a line printed by `list`.
    #[arg(value_name = "OBJ", allow_hyphen_values = true)]
    pub object: String,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// First byte to read.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub offset: u64,
    /// Bytes to read; 0 reads to the end.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub length: u64,
}

#[derive(Debug, Args)]
pub struct GetattrArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// The attr's name.
    #[arg(value_name = "NAME", allow_hyphen_values = true)]
    pub name: String,
    /// Write the value's bytes to stdout instead of its JSON form.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct OmapArgs {
    #[command(flatten)]
    pub obj: ObjectArgs,
    /// Show only this key (repeatable); `{"hex":"..."}` gives a binary key. ENOENT if
    /// the object has no such key.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this collection; all collections in order when omitted.
    #[arg(long, alias = "pgid", value_name = "CID")]
    pub collection: Option<String>,
    /// First object to list (inclusive).
    #[arg(long, value_name = "OBJ", allow_hyphen_values = true)]
    pub start: Option<String>,
    /// List objects after this one (exclusive): pass the last line of the previous page.
    #[arg(
        long,
        value_name = "OBJ",
        conflicts_with = "start",
        allow_hyphen_values = true
    )]
    pub after: Option<String>,
    /// Stop before this object (exclusive); needs --collection.
    #[arg(long, value_name = "OBJ", allow_hyphen_values = true)]
    pub end: Option<String>,
    /// List at most N objects.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max: Option<usize>,
}

/// Why parsing stopped without a command to run.
#[derive(Debug)]
pub enum ParseExit {
    /// `--help` or `--version`: print this on stdout and exit 0.
    Info(String),
    /// A usage error, already in the one-line form's terms.
    Usage(Error),
}

/// Moves `--op NAME` (or `--op=NAME`) to the subcommand position. Every other option
/// is global or belongs to the subcommand, and clap accepts both after the subcommand
/// name, so `--data-path D --collection C --op list` parses as `list --data-path D
/// --collection C`.
pub fn rewrite_op(args: Vec<OsString>) -> Vec<OsString> {
    let mut found: Option<(usize, usize, OsString)> = None;
    for (i, a) in args.iter().enumerate().skip(1) {
        if a == "--" {
            break;
        }
        if a == "--op" {
            if let Some(name) = args.get(i + 1) {
                found = Some((i, 2, name.clone()));
            }
            break;
        }
        if let Some(name) = a.to_str().and_then(|s| s.strip_prefix("--op=")) {
            found = Some((i, 1, name.into()));
            break;
        }
    }
    let Some((i, n, name)) = found else {
        return args;
    };
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    out.push(name);
    out.extend(it.enumerate().filter_map(|(j, a)| {
        let j = j + 1;
        (j < i || j >= i + n).then_some(a)
    }));
    out
}

pub fn parse(args: Vec<OsString>) -> Result<Cli, ParseExit> {
    match Cli::try_parse_from(rewrite_op(args)) {
        Ok(c) => Ok(c),
        Err(e) => {
            use clap::error::ErrorKind as K;
            match e.kind() {
                K::DisplayHelp | K::DisplayVersion => Err(ParseExit::Info(e.render().to_string())),
                _ => Err(ParseExit::Usage(usage_error(&e))),
            }
        }
    }
}

fn usage_error(e: &clap::Error) -> Error {
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad command line");
    let first = first.trim().strip_prefix("error: ").unwrap_or(first.trim());
    Error::invalid(format!("{first} (see os-tool --help)"))
}

/// Subcommand names, for documentation checks.
pub fn command_names() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn op_moves_to_the_subcommand_position() {
        assert_eq!(
            rewrite_op(os(&[
                "t",
                "--data-path",
                "d",
                "--collection",
                "c",
                "--op",
                "list"
            ])),
            os(&["t", "list", "--data-path", "d", "--collection", "c"])
        );
        assert_eq!(
            rewrite_op(os(&["t", "--op=info", "--data-path", "d"])),
            os(&["t", "info", "--data-path", "d"])
        );
        let plain = os(&["t", "list", "--", "--op", "x"]);
        assert_eq!(rewrite_op(plain.clone()), plain);
    }

    #[test]
    fn op_form_parses_like_the_subcommand() {
        let c = parse(os(&[
            "os-tool",
            "--data-path",
            "/d",
            "--pgid",
            "1.0",
            "--op",
            "list-pgs",
        ]));
        // list-collections takes no --pgid: a usage error, not a panic.
        assert!(matches!(c, Err(ParseExit::Usage(_))));
        let c = parse(os(&["os-tool", "--data-path", "/d", "--op", "list-pgs"])).unwrap();
        assert!(matches!(c.command, Command::ListCollections));
        let c = parse(os(&["os-tool", "--data-path", "/d", "--op", "dump-super"])).unwrap();
        assert!(matches!(c.command, Command::Info));
    }

    #[test]
    fn usage_errors_are_one_line_einval() {
        match parse(os(&["os-tool", "--data-path", "/d", "frob"])) {
            Err(ParseExit::Usage(e)) => {
                assert_eq!(e.kind(), ostore_os::ErrorKind::InvalidArgument);
                assert!(e.message().contains("frob"), "{e}");
                assert!(!e.message().contains('\n'));
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
