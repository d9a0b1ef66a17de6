//! What the daemon asks of rtnetlink: links, bridges, addresses, the main table's IPv4
//! routes, the peer nodes' neighbour entries and routes, and a stream of link/address
//! changes.
mod monitor;
mod neigh;
mod own;
mod peer_route;
mod proxy;
mod routes;

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
pub use monitor::{Change, monitor};
pub use neigh::Neighbour;
pub use own::{BRIDGE_ALIAS, HostTeardown, VXLAN_DEVICE};
pub use peer_route::{ListedRoute, PeerRoute};
pub use proxy::enable_proxy_ndp;
pub use routes::{Hop, Route4};
use rtnetlink::{
    Handle, LinkBridge, LinkUnspec, LinkVxlan,
    packet_route::{
        AddressFamily,
        address::{AddressAttribute, AddressMessage, AddressProtocol},
        link::{
            InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage,
        },
        neighbour::{NeighbourAttribute, NeighbourState},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("netlink {what}: {source}")]
    Request {
        what: String,
        source: rtnetlink::Error,
    },
}

fn req(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE`), the value
/// `bpf_get_netns_cookie` returns for sockets in it.
pub fn netns_cookie() -> std::io::Result<u64> {
    use std::os::fd::AsRawFd as _;
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let fd = probe_socket()?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt on a socket `fd` keeps open writes at most `len` (8) bytes into
    // `cookie`. Raw: neither rustix nor nix wraps SO_NETNS_COOKIE.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// A socket of this thread's network namespace, to ask it about interfaces.
fn probe_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{AddressFamily, SocketType, socket};
    Ok(socket(AddressFamily::INET, SocketType::DGRAM, None)?)
}

/// The name of interface `index` in this namespace.
pub fn ifname(index: u32) -> Option<String> {
    rustix::net::netdevice::index_to_name(probe_socket().ok()?, index).ok()
}

/// The index of interface `name` in this namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    rustix::net::netdevice::name_to_index(probe_socket().ok()?, name).ok()
}

/// In the network namespace at `sandbox` (a container's), find the interface with
/// `mac` and return the ifindex of its veth peer in this namespace. Runs on a thread of
/// its own, which enters the namespace.
pub fn veth_in_sandbox(sandbox: &str, mac: [u8; 6]) -> std::io::Result<Option<u32>> {
    let ns = std::fs::File::open(sandbox)?;
    std::thread::spawn(move || -> std::io::Result<Option<u32>> {
        use std::os::fd::AsFd as _;
        // Only this thread moves.
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            let links: Vec<LinkMessage> = handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(std::io::Error::other)?;
            Ok(links.iter().find_map(|l| {
                let has_mac = l
                    .attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Address(m) if m.as_slice() == mac));
                has_mac.then(|| {
                    l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::Link(peer) => Some(*peer),
                        _ => None,
                    })
                })?
            }))
        })
    })
    .join()
    .map_err(|_| std::io::Error::other("sandbox lookup thread panicked"))?
}

/// A network interface as far as bpfnet cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// ifindex of the bridge (or other controller) it is enslaved to.
    pub controller: Option<u32>,
    pub is_veth: bool,
    pub is_bridge: bool,
    /// What its frames start with.
    pub layer: Layer,
    pub mac: Option<[u8; 6]>,
}

/// The link layer of an interface, as far as the datapath cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Ethernet frames.
    Ether,
    /// Bare IP packets, no link-layer header: `WireGuard` and tun (`none`), IP-in-IP and
    /// SIT, GRE, PPP, raw-IP modems.
    Ip,
    /// Anything else (loopback among them).
    Other,
}

impl From<LinkLayerType> for Layer {
    fn from(t: LinkLayerType) -> Self {
        match t {
            LinkLayerType::Ether => Self::Ether,
            LinkLayerType::None
            | LinkLayerType::Tunnel
            | LinkLayerType::Tunnel6
            | LinkLayerType::Sit
            | LinkLayerType::Ipgre
            | LinkLayerType::Ip6gre
            | LinkLayerType::Ppp
            | LinkLayerType::Rawip => Self::Ip,
            _ => Self::Other,
        }
    }
}

impl Link {
    pub(crate) fn from_message(msg: &LinkMessage) -> Option<Self> {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            controller: None,
            is_veth: false,
            is_bridge: false,
            layer: msg.header.link_layer_type.into(),
            mac: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name.clone_from(n),
                LinkAttribute::Controller(c) => link.controller = Some(*c),
                LinkAttribute::Address(a) => link.mac = a.as_slice().try_into().ok(),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.is_veth = *kind == InfoKind::Veth;
                            link.is_bridge = *kind == InfoKind::Bridge;
                        }
                    }
                }
                _ => {}
            }
        }
        (!link.name.is_empty()).then_some(link)
    }
}

/// A connection to rtnetlink in this network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Connect; the connection's task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let msgs = self.link_messages().await?;
        Ok(msgs.iter().filter_map(Link::from_message).collect())
    }

    /// Every link, as the kernel describes it.
    async fn link_messages(&self) -> Result<Vec<LinkMessage>, NetlinkError> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(req("link dump"))
    }

    /// Every address of both families, as the kernel describes it.
    async fn address_messages(&self) -> Result<Vec<AddressMessage>, NetlinkError> {
        self.handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(req("address dump"))
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        Ok(self.links().await?.into_iter().find(|l| l.name == name))
    }

    /// Create bridge `name`, up, with `addr` if given, marked as bpfnet's (its alias).
    pub async fn create_bridge(
        &self,
        name: &str,
        addr: Option<(Ipv4Addr, u8)>,
    ) -> Result<Link, NetlinkError> {
        self.handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(req(format!("create bridge {name}")))?;
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| NetlinkError::Request {
                what: format!("bridge {name} vanished after creation"),
                source: rtnetlink::Error::RequestFailed,
            })?;
        // Unmarked, it is only left at `--cleanup`: the bridge itself is fine.
        if let Err(e) = self.mark_own_bridge(link.index).await {
            tracing::warn!(bridge = %name, error = %e, "cannot mark the bridge as bpfnet's");
        }
        if let Some((ip, len)) = addr {
            self.add_address(&link, ip, len).await?;
        }
        Ok(link)
    }

    /// The MTU of interface `index`.
    pub async fn mtu(&self, index: u32) -> Result<Option<u32>, NetlinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_collect()
            .await
            .map_err(req(format!("get link {index}")))?;
        Ok(msgs
            .iter()
            .flat_map(|m| &m.attributes)
            .find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            }))
    }

    /// Create VXLAN device `name` in collect-metadata mode (each packet's key and
    /// remote set by the datapath) on UDP port `port`, with `mac` and `mtu`, up, bound
    /// to the underlay: it sends from `local`, over interface `link`.
    pub async fn create_vxlan(
        &self,
        name: &str,
        port: u16,
        mac: [u8; 6],
        mtu: u32,
        (local, link): (Ipv4Addr, u32),
    ) -> Result<Link, NetlinkError> {
        let msg = LinkVxlan::new(name, 0)
            .collect_metadata(true)
            .port(port)
            .local(local)
            .dev(link)
            .learning(false)
            .address(mac.to_vec())
            // The host's packets into the tunnel need no neighbour: the datapath writes
            // their MACs (`to_tunnel`).
            .arp(false)
            .mtu(mtu)
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(req(format!("create VXLAN device {name}")))?;
        self.link_by_name(name)
            .await?
            .ok_or_else(|| NetlinkError::Request {
                what: format!("VXLAN device {name} vanished after creation"),
                source: rtnetlink::Error::RequestFailed,
            })
    }

    /// The underlay VXLAN device `index` is bound to: its local address and its link
    /// (None: not set, or not a VXLAN device).
    pub async fn vxlan_binding(
        &self,
        index: u32,
    ) -> Result<(Option<Ipv4Addr>, Option<u32>), NetlinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_collect()
            .await
            .map_err(req(format!("get link {index}")))?;
        let (mut local, mut link) = (None, None);
        for info in msgs
            .iter()
            .flat_map(|m| &m.attributes)
            .filter_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => Some(infos),
                _ => None,
            })
        {
            for data in info.iter().filter_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
                _ => None,
            }) {
                for d in data {
                    match d {
                        InfoVxlan::Local(a) => local = Some(*a),
                        InfoVxlan::Link(l) => link = Some(*l),
                        _ => {}
                    }
                }
            }
        }
        Ok((local, link))
    }

    /// Remove interface `index`.
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(req(format!("delete link {index}")))
    }

    /// Turn ARP off on link `index` (`ip link set DEV arp off`).
    pub async fn no_arp(&self, index: u32) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).arp(false).build())
            .execute()
            .await
            .map_err(req(format!("arp off on link {index}")))
    }

    /// Add `ip/len` to `link`.
    pub async fn add_address(
        &self,
        link: &Link,
        ip: impl Into<IpAddr>,
        len: u8,
    ) -> Result<(), NetlinkError> {
        let ip: IpAddr = ip.into();
        let mut add = self.handle.address().add(link.index, ip, len);
        // Marked as bpfnet's for `--cleanup` (IFA_PROTO: kernels before 5.18 ignore it).
        add.message_mut()
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                neigh::PROTOCOL,
            )));
        add.execute()
            .await
            .map_err(req(format!("add {ip}/{len} to {}", link.name)))
    }

    /// Every address configured on an interface, both families: (ifindex, address,
    /// prefix length). An IPv4 address is its `IFA_LOCAL` (a point-to-point link's
    /// `IFA_ADDRESS` is its peer), an IPv6 one its `IFA_ADDRESS` (IPv6 has no other).
    pub async fn prefixes(&self) -> Result<Vec<(u32, IpAddr, u8)>, NetlinkError> {
        let msgs = self.address_messages().await?;
        Ok(msgs
            .iter()
            .flat_map(|m| {
                m.attributes.iter().filter_map(move |a| match a {
                    AddressAttribute::Local(ip @ IpAddr::V4(_))
                    | AddressAttribute::Address(ip @ IpAddr::V6(_)) => {
                        Some((m.header.index, *ip, m.header.prefix_len))
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// MACs the bridge has learned on port `ifindex` (its FDB minus permanent entries).
    pub async fn learned_macs(&self, ifindex: u32) -> Result<Vec<[u8; 6]>, NetlinkError> {
        let msgs = self
            .neighbour_dump(AddressFamily::Bridge, false, "bridge FDB dump")
            .await?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == ifindex && m.header.state != NeighbourState::Permanent)
            .flat_map(|m| m.attributes.iter())
            .filter_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(mac) => mac.as_slice().try_into().ok(),
                _ => None,
            })
            .collect())
    }
}
