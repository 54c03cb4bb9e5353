//! `os-tool journal dump`: what every journal volume holds, read without mounting (like
//! the `voldump` of the durable package): per volume its header, sectors and batches;
//! then every entry a replay would see, with its sequence number and transactions. A
//! damaged journal is dumped up to the damage, and the damage is reported.

use std::ops::ControlFlow;
use std::path::Path;

use ostore_journal::{
    dump_volume, read_info, volume_path, MetaAction, Position, RealFs, ScanCallbacks, Tail,
};
use ostore_os::journaling::{decode_entry_meta, decode_entry_staged, journal_error};
use ostore_os::json::op_to_json;
use ostore_os::Result;
use serde_json::{json, Value};

struct Collect {
    ops: bool,
    entries: Vec<Value>,
    cur: Option<(Position, Result<u64>, u64)>,
    data: Vec<u8>,
}

impl ScanCallbacks for Collect {
    fn meta(&mut self, pos: Position, meta: &[u8], len: u64) -> MetaAction {
        self.cur = Some((pos, decode_entry_meta(meta), len));
        self.data.clear();
        MetaAction::ReadData
    }
    fn data(&mut self, chunk: &[u8], last: bool) -> ControlFlow<()> {
        self.data.extend_from_slice(chunk);
        if last {
            if let Some((pos, seq, len)) = self.cur.take() {
                let mut e = json!({"position": pos.to_string(), "bytes": len});
                match seq {
                    Ok(s) => e["seq"] = json!(s),
                    Err(err) => e["error"] = json!(err.to_string()),
                }
                match decode_entry_staged(&self.data) {
                    Ok((txns, staged)) => {
                        e["transactions"] = json!(txns.len());
                        if !staged.is_empty() {
                            // Writes whose data went to the store's staging area
                            // before the entry (docs/FORMATS.md, "Staged writes").
                            e["staged"] = json!(staged
                                .iter()
                                .map(|s| json!({
                                    "transaction": s.txn,
                                    "op": s.op,
                                    "id": format!("{:016x}", s.id),
                                    "length": s.len,
                                    "crc32c": s.crc,
                                }))
                                .collect::<Vec<_>>());
                        }
                        let names: Vec<Value> = txns
                            .iter()
                            .map(|t| {
                                if self.ops {
                                    json!(t.ops().iter().map(op_to_json).collect::<Vec<_>>())
                                } else {
                                    json!(t
                                        .ops()
                                        .iter()
                                        .map(|o| o.code().name())
                                        .collect::<Vec<_>>())
                                }
                            })
                            .collect();
                        e["ops"] = json!(names);
                    }
                    Err(err) => e["error"] = json!(format!("undecodable transactions: {err}")),
                }
                self.entries.push(e);
            }
        }
        ControlFlow::Continue(())
    }
}

/// The dump as one JSON document, and the damage that stopped the scan, if any.
pub fn dump(dir: &Path, only: Option<u64>, ops: bool) -> Result<(Value, Option<ostore_os::Error>)> {
    let vfs = RealFs::new();
    let info = read_info(&vfs, dir).map_err(journal_error)?;
    let vols = ostore_journal::scan::list_volumes(&vfs, dir).map_err(journal_error)?;
    if let Some(o) = only.filter(|o| !vols.contains(o)) {
        return Err(ostore_os::Error::not_found(format!(
            "journal {} has no volume {o} (it has {})",
            dir.display(),
            match (vols.first(), vols.last()) {
                (Some(a), Some(b)) => format!("volumes {a} to {b}"),
                _ => "no volumes".to_string(),
            }
        )));
    }
    let mut volumes = Vec::new();
    for &v in vols.iter().filter(|v| only.is_none_or(|o| o == **v)) {
        let d = dump_volume(
            &vfs,
            &volume_path(dir, v),
            Some((info.geometry, info.magic)),
        );
        volumes.push(match d {
            Ok(d) => {
                let batches: Vec<Value> = d
                    .batches
                    .iter()
                    .map(|b| {
                        json!({
                            "position": b.position.to_string(),
                            "entries": b.entries.len(),
                            "continues": b.continues,
                            "error": b.error,
                        })
                    })
                    .collect();
                json!({
                    "volume": d.volume,
                    "header": match &d.header { Ok(h) => json!(format!("{h:?}")), Err(e) => json!({"error": e}) },
                    "own_sectors": d.own_sectors,
                    "other_sectors": d.other_sectors,
                    "batches": batches,
                })
            }
            Err(e) => json!({"volume": v, "error": e.to_string()}),
        });
    }
    let mut c = Collect {
        ops,
        entries: Vec::new(),
        cur: None,
        data: Vec::new(),
    };
    let from = only.or_else(|| vols.first().copied()).unwrap_or(0);
    let to = only.map(|o| o + 1);
    let scanned = ostore_journal::scan(&vfs, dir, from, to, &mut c);
    let (tail, damage) = match scanned {
        Ok(out) => (
            match out.tail {
                Tail::Clean => json!("clean"),
                Tail::Torn { at, reason } => json!({"torn": at.to_string(), "reason": reason}),
                Tail::Limit => json!("volume limit"),
                Tail::Stopped => json!("stopped"),
            },
            None,
        ),
        Err(e) => {
            let e = journal_error(e);
            (json!({"damaged": e.to_string()}), Some(e))
        }
    };
    let doc = json!({
        "journal": dir.display().to_string(),
        "geometry": {
            "sector_size": info.geometry.sector_size,
            "volume_size": info.geometry.volume_size,
            "toc_len": info.geometry.toc_len,
        },
        "volumes": volumes,
        "entries": c.entries,
        "tail": tail,
    });
    Ok((doc, damage))
}
