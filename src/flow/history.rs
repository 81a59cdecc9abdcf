//! Zeek's conn_state and history letters (see ../shared/reference/zeek-conn-and-community-id.md).

/// Zeek conn_state values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConnState {
    S0,
    S1,
    SF,
    REJ,
    S2,
    S3,
    RSTO,
    RSTR,
    RSTOS0,
    RSTRH,
    SH,
    SHR,
    #[default]
    OTH,
}

impl ConnState {
    pub fn as_str(&self) -> &'static str {
        use ConnState::*;
        match self {
            S0 => "S0",
            S1 => "S1",
            SF => "SF",
            REJ => "REJ",
            S2 => "S2",
            S3 => "S3",
            RSTO => "RSTO",
            RSTR => "RSTR",
            RSTOS0 => "RSTOS0",
            RSTRH => "RSTRH",
            SH => "SH",
            SHR => "SHR",
            OTH => "OTH",
        }
    }
}

/// Up to 16 history letters stored inline (Zeek's string, bounded; `Copy`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct History {
    len: u8,
    letters: [u8; 16],
}

impl History {
    pub const CAP: usize = 16;
    pub fn push(&mut self, c: u8) {
        if (self.len as usize) < Self::CAP {
            self.letters[self.len as usize] = c;
            self.len += 1;
        }
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.letters[..self.len as usize]).unwrap_or("")
    }
    pub fn contains(&self, c: u8) -> bool {
        self.letters[..self.len as usize].contains(&c)
    }
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
