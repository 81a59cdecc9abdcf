//! Sysmon for Linux: the XML events it writes to syslog, one per line after the syslog
//! prefix:
//!
//! ```text
//! Nov 20 10:00:02 web-1 sysmon: <Event><System><Provider Name="Linux-Sysmon" .../>
//!   <EventID>3</EventID>...<Computer>web-1</Computer>...</System><EventData>
//!   <Data Name="UtcTime">2026-11-20 10:00:01.120</Data><Data Name="ProcessGuid">{...}</Data>
//!   <Data Name="ProcessId">3117</Data><Data Name="Image">/usr/bin/curl</Data>
//!   <Data Name="User">deploy</Data><Data Name="Protocol">tcp</Data>
//!   <Data Name="SourceIp">10.2.0.3</Data><Data Name="SourcePort">40112</Data>
//!   <Data Name="DestinationIp">71.63.201.9</Data><Data Name="DestinationPort">443</Data>...
//! ```
//!
//! Event ID 1 (process create) becomes a process event keyed by `ProcessGuid` (and
//! pid); Event ID 3 (network connect) a network event that joins it by `ProcessGuid`
//! for the command line and parent. Other event IDs and non-Sysmon syslog lines are
//! ignored. `SourceIp`/`DestinationIp` are taken as written. Never panics (see
//! [`super::xml`]).

use super::event::{basename, parse_ip, parse_transport, EdrEvent, NetworkEvent, ProcessEvent};
use super::reader::{Reject, RejectReason, Sink};
use super::xml::{self, XmlError};
use super::{Attribution, HostInfo, OsInfo, ParentInfo, ProcessInfo, UserInfo};
use crate::time::Ts;

/// True when the line carries a Windows-style event record (`<Event>` with an
/// `<EventID>`), as Sysmon for Linux writes.
pub fn looks_like(line: &str) -> bool {
    (line.contains("<Event>") || line.contains("<Event ")) && line.contains("<EventID>")
}

pub fn parse_line(line: &str, sink: &mut Sink) {
    match parse(line) {
        Ok(Some(ev)) => sink.events.push(ev),
        Ok(None) => sink.ignored += 1,
        Err(r) => sink.reject(r),
    }
}

fn xml_err(e: XmlError) -> Reject {
    Reject::new(RejectReason::MalformedXml, format!("{e:?}"))
}

/// `2026-11-20 10:00:01.120` (UTC) as Sysmon writes `UtcTime`.
pub fn parse_utc_time(s: &str) -> Option<Ts> {
    let s = s.trim();
    if s.len() < 19 || s.len() > 40 {
        return None;
    }
    Ts::parse_rfc3339(&format!("{s}Z"))
}

struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl Fields<'_> {
    /// The unescaped value; `-` (Sysmon's "none") and empty count as absent.
    fn get(&self, name: &str) -> Option<String> {
        let v = self.0.iter().find(|(k, _)| *k == name)?.1.trim();
        (!v.is_empty() && v != "-").then(|| xml::unescape(v))
    }
    fn need(&self, name: &str) -> Result<String, Reject> {
        self.get(name).ok_or_else(|| Reject::missing(name))
    }
    fn num<T: std::str::FromStr>(
        &self,
        name: &str,
        reason: RejectReason,
    ) -> Result<Option<T>, Reject> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Reject::new(reason, format!("{name} {v:?}"))),
        }
    }
}

fn parse(line: &str) -> Result<Option<EdrEvent>, Reject> {
    let Some(start) = line.find("<Event") else {
        return Ok(None); // other syslog traffic
    };
    let body = line.get(start..).unwrap_or("");
    let end = body
        .find("</Event>")
        .ok_or_else(|| xml_err(XmlError::NoEvent))?;
    let ev = body.get(..end).unwrap_or("");
    let id = xml::element_text(ev, "EventID")
        .ok_or_else(|| Reject::new(RejectReason::MalformedXml, "no EventID"))?;
    let id: u32 = id
        .trim()
        .parse()
        .map_err(|_| Reject::new(RejectReason::MalformedXml, format!("EventID {id:?}")))?;
    if id != 1 && id != 3 {
        return Ok(None);
    }
    let computer = xml::element_text(ev, "Computer")
        .map(|c| xml::unescape(c.trim()))
        .filter(|c| !c.is_empty());
    let data = xml::element_text(ev, "EventData")
        .ok_or_else(|| Reject::new(RejectReason::MalformedXml, "no EventData"))?;
    let f = Fields(xml::data_pairs(data).map_err(xml_err)?);
    let time = f.need("UtcTime")?;
    let ts = parse_utc_time(&time)
        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, format!("UtcTime {time:?}")))?;
    let pid: Option<u32> = f.num("ProcessId", RejectReason::BadField)?;
    let image = f.get("Image");
    let host = Some(HostInfo {
        name: computer,
        os: Some(OsInfo {
            platform: Some("linux".into()),
        }),
    });
    let user = f.get("User").map(|u| UserInfo { name: Some(u) });
    let guid = f.get("ProcessGuid");
    let mut process = ProcessInfo {
        pid,
        name: image.as_deref().map(|i| basename(i).to_owned()),
        executable: image.clone(),
        ..ProcessInfo::default()
    };
    if id == 1 {
        let pid = pid.ok_or_else(|| Reject::missing("ProcessId"))?;
        process.command_line = f.get("CommandLine");
        let parent_image = f.get("ParentImage");
        let parent = ParentInfo {
            pid: f.num("ParentProcessId", RejectReason::BadField)?,
            name: parent_image.as_deref().map(|i| basename(i).to_owned()),
            executable: parent_image,
            command_line: f.get("ParentCommandLine"),
        };
        if parent != ParentInfo::default() {
            process.parent = Some(parent);
        }
        return Ok(Some(EdrEvent::Process(ProcessEvent {
            ts,
            host_ips: vec![],
            pid,
            start: ts,
            exited: false,
            process_guid: guid,
            uid: None,
            attribution: Attribution {
                host,
                process: Some(process),
                user,
                launchd: None,
                vm: None,
            },
        })));
    }
    let proto = f.need("Protocol")?;
    let transport = parse_transport(&proto).ok_or_else(|| {
        Reject::new(
            RejectReason::UnknownTransport,
            format!("Protocol {proto:?}"),
        )
    })?;
    let ip = |name: &str| -> Result<_, Reject> {
        let v = f.need(name)?;
        parse_ip(&v).ok_or_else(|| Reject::new(RejectReason::BadAddress, format!("{name} {v:?}")))
    };
    let src = ip("SourceIp")?;
    let dst = ip("DestinationIp")?;
    let sport: Option<u16> = f.num("SourcePort", RejectReason::BadPort)?;
    let dport: u16 = f
        .num("DestinationPort", RejectReason::BadPort)?
        .ok_or_else(|| Reject::missing("DestinationPort"))?;
    Ok(Some(EdrEvent::Network(NetworkEvent {
        ts,
        transport,
        src: Some(src),
        sport: sport.filter(|&p| p != 0),
        dst,
        dport,
        snapshot: false,
        process_guid: guid,
        uid: None,
        attribution: Attribution {
            host,
            process: Some(process),
            user,
            launchd: None,
            vm: None,
        },
    })))
}
