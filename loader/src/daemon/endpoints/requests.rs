//! `bpfnet endpoint add` and `del`: the registered endpoints in `State`.
use std::net::IpAddr;

use common::{Be32, Ip6};
use tracing::info;

use crate::{
    api::{ApiError, Invalid, Missing},
    daemon::Daemon,
    endpoint::{EndpointSpec, Ipv4Cidr, Ipv6Cidr, Mac},
};

impl Daemon {
    pub(in crate::daemon) async fn add_endpoint(
        &mut self,
        bridge: String,
        veth: String,
        ip: Option<Ipv4Cidr>,
        ip6: Vec<Ipv6Cidr>,
        mac: Option<Mac>,
    ) -> Result<(), ApiError> {
        let Some(br_index) = self
            .host
            .links
            .by_name(&bridge)
            .map(|l| l.index)
            .filter(|&i| self.host.links.is_bridge(i))
        else {
            return Err(ApiError::NotFound {
                missing: Missing::Bridge { name: bridge },
            });
        };
        let Some((veth_index, veth_bridge)) = self
            .host
            .links
            .veths()
            .find(|(l, _)| l.name == veth)
            .map(|(l, b)| (l.index, b))
        else {
            return Err(ApiError::NotFound {
                missing: Missing::Veth { name: veth },
            });
        };
        if veth_bridge != br_index {
            return Err(Invalid::NotAPort { veth, bridge }.into());
        }
        let addrs: Vec<IpAddr> = ip
            .map(|c| IpAddr::V4(c.addr()))
            .into_iter()
            .chain(ip6.iter().map(|c| IpAddr::V6(c.addr())))
            .collect();
        if addrs.is_empty() {
            return Err(Invalid::NoAddress.into());
        }
        for (i, &addr) in addrs.iter().enumerate() {
            if addrs[..i].contains(&addr) {
                return Err(Invalid::GivenTwice { addr }.into());
            }
            let claimable = match addr {
                IpAddr::V4(a) => self.dp.maps.claimable(Be32::from(a)),
                IpAddr::V6(a) => self.dp.maps.claimable6(Ip6::from(a)),
            };
            if !claimable {
                return Err(Invalid::Unclaimable { addr }.into());
            }
            if let Some(other) = self.all_endpoints().into_iter().find(|e| e.has(addr)) {
                return Err(ApiError::AddressTaken {
                    addr,
                    veth: other.veth,
                });
            }
        }
        let mac = match mac {
            Some(m) => m,
            None => self.learn_mac(&veth, veth_index).await?,
        };
        self.desired.update(|s| {
            s.endpoints.push(EndpointSpec {
                bridge,
                veth,
                ip,
                ip6,
                mac,
            });
            Ok(())
        })?;
        info!(ips = ?addrs, %mac, "endpoint added");
        Ok(())
    }

    async fn learn_mac(&self, veth: &str, index: u32) -> Result<Mac, ApiError> {
        let macs = self.nl.learned_macs(index).await?;
        let veth = veth.to_owned();
        Err(match macs.as_slice() {
            [one] => return Ok(Mac(*one)),
            [] => Invalid::NoMacLearned { veth },
            _ => Invalid::SeveralMacs { veth },
        }
        .into())
    }

    pub(in crate::daemon) fn del_endpoint(&mut self, ip: IpAddr) -> Result<(), ApiError> {
        self.desired.update(|s| {
            let pos = s
                .endpoints
                .iter()
                .position(|e| e.has(ip))
                .ok_or(ApiError::NotFound {
                    missing: Missing::Endpoint { addr: ip },
                })?;
            s.endpoints.remove(pos);
            Ok(())
        })?;
        info!(%ip, "endpoint removed");
        Ok(())
    }
}
