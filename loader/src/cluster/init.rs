//! Writing the cluster config once (`bpfnet cluster init`), and reading it back.
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use tracing::info;

use super::{
    ClusterConfig, ClusterError, EtcdAccess,
    etcd::{call, connect},
    keys::{Keys, to_json},
};

/// What `init` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// There was no config: this one is written.
    Created,
    /// The same config was already there.
    AlreadyTheSame,
}

/// Write the cluster config at `{prefix}/config` unless one is there, in one transaction;
/// an existing one that differs is left alone and reported as
/// [`ClusterError::ConfigDiffers`].
pub async fn init(
    etcd: &EtcdAccess,
    prefix: &str,
    cfg: &ClusterConfig,
) -> Result<InitOutcome, ClusterError> {
    cfg.validate()?;
    let mut client = connect(etcd).await?;
    let key = Keys::new(prefix).config();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            to_json("the cluster config", cfg)?,
            None,
        )])
        .or_else([TxnOp::get(key.clone(), None)]);
    let resp = call("write the cluster config", client.txn(txn)).await?;
    if resp.succeeded() {
        info!(%key, config = %cfg, "cluster config written");
        return Ok(InitOutcome::Created);
    }
    let existing = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    let Some(existing) = existing else {
        return Err(ClusterError::Raced {
            what: "the cluster config",
        });
    };
    let existing = parse_config(&key, &existing)?;
    if existing == *cfg {
        Ok(InitOutcome::AlreadyTheSame)
    } else {
        Err(ClusterError::ConfigDiffers {
            existing: Box::new(existing),
            wanted: Box::new(cfg.clone()),
        })
    }
}

/// The cluster config in etcd, validated.
pub(crate) async fn read_config(
    client: &mut Client,
    keys: &Keys,
) -> Result<ClusterConfig, ClusterError> {
    let key = keys.config();
    let resp = call("read the cluster config", client.get(key.clone(), None)).await?;
    let kv = resp
        .kvs()
        .first()
        .ok_or_else(|| ClusterError::NoConfig { key: key.clone() })?;
    let cfg = parse_config(&key, kv.value())?;
    cfg.validate().map_err(|e| ClusterError::BadConfig {
        key,
        source: Box::new(e),
    })?;
    Ok(cfg)
}

fn parse_config(key: &str, value: &[u8]) -> Result<ClusterConfig, ClusterError> {
    serde_json::from_slice(value).map_err(|source| ClusterError::ConfigJson {
        key: key.into(),
        source,
    })
}
