//! SAS XPORT version 5 transport files (the FDA submission format).
//!
//! Layout: 80-byte records. A library header (3 records), then per member a member header
//! (2 records + descriptor), a NAMESTR header and one 140-byte (136 on VAX) NAMESTR per
//! variable padded to 80 bytes, an OBS header, and the observations back to back, padded
//! with blanks to a multiple of 80. Numbers are IBM System/370 floating point, big endian,
//! truncated to the variable's length (2–8 bytes); a missing number is one of `.`, `_`,
//! `A`–`Z` followed by zero bytes.
//!
//! Conventions:
//! * IEEE → IBM is exact for every finite f64 in the IBM range (about 5.4e-79 to 7.2e75):
//!   the 53-bit mantissa fits the 56-bit fraction. IBM → IEEE rounds to nearest when the
//!   fraction has more than 53 significant bits (files written by SAS from IBM data).
//!   Values outside the IBM range are refused when writing, never silently clamped.
//! * Character values lose trailing blanks (SAS semantics). Text is decoded as UTF-8 when
//!   valid, otherwise as Latin-1; it is written as UTF-8.
//! * Trailing observations consisting only of blanks inside the final 80-byte record are
//!   padding, not data (the format cannot tell them apart; every reader does this).
//!
//! Reading streams: [`XportReader`] decodes observations record by record and can hand
//! out batches of rows; [`read_xport`] collects whole members.

use crate::data::{Column, ColumnData, Dataset, Missing, VarFormat, XportMeta};
use crate::error::{Result, StatsError};
use std::io::{Read, Write};

const LIB_HEADER: &[u8] =
    b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!000000000000000000000000000000  ";
const MEMBER_PREFIX: &[u8] = b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!";
const DSCRPTR_HEADER: &[u8] =
    b"HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!000000000000000000000000000000  ";
const NAMESTR_PREFIX: &[u8] = b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!";
const OBS_HEADER: &[u8] =
    b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!000000000000000000000000000000  ";

// ---------------------------------------------------------------------------------------
// IBM 370 floating point
// ---------------------------------------------------------------------------------------

/// Converts an f64 to the 8 bytes of an IBM System/370 double (big endian). Exact for
/// finite values in the IBM range; `None` for NaN, infinities and out-of-range magnitudes.
pub fn ieee_to_ibm(x: f64) -> Option<[u8; 8]> {
    if !x.is_finite() {
        return None;
    }
    let bits = x.to_bits();
    let sign = (bits >> 63) as u8;
    if x == 0.0 {
        return Some([sign << 7, 0, 0, 0, 0, 0, 0, 0]);
    }
    let exp_field = ((bits >> 52) & 0x7ff) as i64;
    if exp_field == 0 {
        return None; // subnormal: far below the IBM range
    }
    let exp2 = exp_field - 1023;
    let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let shift = (exp2 + 4).rem_euclid(4);
    let e16 = (exp2 + 4 - shift) / 4 + 64;
    if !(0..=127).contains(&e16) {
        return None;
    }
    let frac = mant << shift; // < 2^56, top hex digit non-zero
    let word = ((sign as u64) << 63) | ((e16 as u64) << 56) | frac;
    Some(word.to_be_bytes())
}

/// Converts IBM System/370 bytes (1–8, missing bytes taken as zero) to f64, rounding to nearest.
pub fn ibm_to_ieee(b: &[u8]) -> f64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    let word = u64::from_be_bytes(w);
    let sign = word >> 63;
    let e16 = ((word >> 56) & 0x7f) as i32;
    let frac = word & ((1u64 << 56) - 1);
    if frac == 0 {
        return if sign == 1 { -0.0 } else { 0.0 };
    }
    // value = frac * 2^(4*(e16-64) - 56); frac as f64 rounds to nearest, the scaling is exact.
    let k = 4 * (e16 - 64) - 56;
    let v = frac as f64 * pow2(k);
    if sign == 1 { -v } else { v }
}

fn pow2(k: i32) -> f64 {
    // k is in [-312, 196]: split to stay within normal exponents.
    if k < -1000 {
        f64::from_bits(((k + 500 + 1023) as u64) << 52)
            * f64::from_bits(((1023 - 500) as u64) << 52)
    } else {
        f64::from_bits(((k + 1023) as u64) << 52)
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// Header information of one member (dataset) and its variables (columns without data).
#[derive(Debug, Clone)]
pub struct MemberHeader {
    pub name: String,
    pub label: String,
    pub ds_type: String,
    pub meta: XportMeta,
    pub columns: Vec<Column>,
    /// Byte position of each variable in an observation.
    positions: Vec<usize>,
    obs_len: usize,
}

/// Streaming XPORT reader.
pub struct XportReader<R: Read> {
    r: R,
    /// Number of whole 80-byte records consumed.
    records: u64,
    lib_meta: XportMeta,
    /// A member header record met while reading data (start of the next member).
    pending_member: Option<[u8; 80]>,
    eof: bool,
    // data section state
    member: Option<MemberHeader>,
    data: Vec<u8>,
    /// Offset in `data` before which observations are known not to be padding.
    confirmed: usize,
    /// File offset of `data[0]`.
    data_offset: u64,
    finished_member: bool,
    member_ended: bool,
}

fn trim_text(b: &[u8]) -> String {
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(0, |p| p + 1);
    let b = &b[..end];
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b.iter().map(|&c| c as char).collect(),
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<R: Read> XportReader<R> {
    /// Reads and checks the library header.
    pub fn new(r: R) -> Result<Self> {
        let mut me = XportReader {
            r,
            records: 0,
            lib_meta: XportMeta::default(),
            pending_member: None,
            eof: false,
            member: None,
            data: Vec::new(),
            confirmed: 0,
            data_offset: 0,
            finished_member: true,
            member_ended: false,
        };
        let h = me.expect_record("library header")?;
        if h.starts_with(b"HEADER RECORD*******LIBV8") {
            return Err(me.err_at(
                "SAS XPORT version 8/9 file: only version 5 (the FDA submission format) is supported",
                1,
            ));
        }
        if h[..48] != LIB_HEADER[..48] {
            return Err(me.err_at("not a SAS XPORT file: bad library header", 1));
        }
        let r2 = me.expect_record("library header")?;
        if &r2[..8] != b"SAS     " {
            return Err(me.err_at("bad library header second record", 2));
        }
        if &r2[16..24] == b"SASLIB  " {
            // fine
        } else {
            return Err(me.err_at("bad library header: expected SASLIB", 2));
        }
        me.lib_meta.sas_version = trim_text(&r2[24..32]);
        me.lib_meta.os = trim_text(&r2[32..40]);
        me.lib_meta.created = trim_text(&r2[64..80]);
        let r3 = me.expect_record("library header")?;
        me.lib_meta.modified = trim_text(&r3[..16]);
        Ok(me)
    }

    fn err_at(&self, msg: &str, record: u64) -> StatsError {
        StatsError::Xport {
            message: msg.to_string(),
            record,
            offset: (record.saturating_sub(1)) * 80,
        }
    }

    /// Reads one record; `Ok(None)` at a clean end of file; a partial record is returned
    /// zero-padded with its real length.
    fn read_record(&mut self) -> Result<Option<([u8; 80], usize)>> {
        if self.eof {
            return Ok(None);
        }
        let mut buf = [0u8; 80];
        let mut got = 0;
        while got < 80 {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got == 0 {
            self.eof = true;
            return Ok(None);
        }
        if got < 80 {
            self.eof = true;
        }
        self.records += 1;
        Ok(Some((buf, got)))
    }

    fn expect_record(&mut self, what: &str) -> Result<[u8; 80]> {
        match self.read_record()? {
            Some((b, 80)) => Ok(b),
            Some((_, n)) => Err(StatsError::Xport {
                message: format!("truncated {what}: {n} of 80 bytes"),
                record: self.records,
                offset: (self.records - 1) * 80 + n as u64,
            }),
            None => Err(StatsError::Xport {
                message: format!("unexpected end of file: expected {what}"),
                record: self.records + 1,
                offset: self.records * 80,
            }),
        }
    }

    /// Library-level metadata (SAS version, OS, creation time).
    pub fn library_meta(&self) -> &XportMeta {
        &self.lib_meta
    }

    /// Advances to the next member, skipping unread rows of the current one.
    pub fn next_member(&mut self) -> Result<Option<&MemberHeader>> {
        while !self.finished_member {
            self.read_batch(usize::MAX)?;
        }
        let head = match self.pending_member.take() {
            Some(h) => h,
            None => match self.read_record()? {
                None => return Ok(None),
                Some((b, 80)) => b,
                Some((b, n)) => {
                    if b[..n].iter().all(|&c| c == b' ' || c == 0) {
                        return Ok(None);
                    }
                    return Err(StatsError::Xport {
                        message: "truncated member header".into(),
                        record: self.records,
                        offset: (self.records - 1) * 80 + n as u64,
                    });
                }
            },
        };
        let rec_no = self.records;
        if head[..48] != MEMBER_PREFIX[..] {
            if head.iter().all(|&c| c == b' ' || c == 0) {
                return Ok(None);
            }
            return Err(self.err_at("expected a MEMBER header record", rec_no));
        }
        let nlen: usize = std::str::from_utf8(&head[74..78])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| self.err_at("bad NAMESTR length in member header", rec_no))?;
        if nlen != 140 && nlen != 136 {
            return Err(self.err_at(&format!("unsupported NAMESTR length {nlen}"), rec_no));
        }
        let d = self.expect_record("DSCRPTR header")?;
        if d[..48] != DSCRPTR_HEADER[..48] {
            return Err(self.err_at("expected DSCRPTR header record", self.records));
        }
        let m1 = self.expect_record("member descriptor")?;
        let m2 = self.expect_record("member descriptor")?;
        let name = trim_text(&m1[8..16]);
        let meta = XportMeta {
            sas_version: trim_text(&m1[24..32]),
            os: trim_text(&m1[32..40]),
            created: trim_text(&m1[64..80]),
            modified: trim_text(&m2[..16]),
        };
        let label = trim_text(&m2[32..72]);
        let ds_type = trim_text(&m2[72..80]);
        let nh = self.expect_record("NAMESTR header")?;
        if nh[..48] != NAMESTR_PREFIX[..] {
            return Err(self.err_at("expected NAMESTR header record", self.records));
        }
        let nvar: usize = std::str::from_utf8(&nh[54..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| self.err_at("bad variable count in NAMESTR header", self.records))?;
        let total = nvar * nlen;
        let nrec = total.div_ceil(80);
        let first_namestr_rec = self.records + 1;
        let mut raw = Vec::with_capacity(nrec * 80);
        for _ in 0..nrec {
            raw.extend_from_slice(&self.expect_record("NAMESTR records")?);
        }
        let mut columns = Vec::with_capacity(nvar);
        let mut positions = Vec::with_capacity(nvar);
        let mut obs_len = 0usize;
        for v in 0..nvar {
            let ns = &raw[v * nlen..v * nlen + nlen];
            let at = |msg: &str| StatsError::Xport {
                message: format!("variable {}: {msg}", v + 1),
                record: first_namestr_rec + (v * nlen / 80) as u64,
                offset: (first_namestr_rec - 1) * 80 + (v * nlen) as u64,
            };
            let ntype = be16(&ns[0..2]);
            let len = be16(&ns[4..6]) as usize;
            let vname = trim_text(&ns[8..16]);
            let vlabel = trim_text(&ns[16..56]);
            let format = VarFormat {
                name: trim_text(&ns[56..64]),
                width: be16(&ns[64..66]),
                decimals: be16(&ns[66..68]),
            };
            let just = be16(&ns[68..70]);
            let informat = VarFormat {
                name: trim_text(&ns[72..80]),
                width: be16(&ns[80..82]),
                decimals: be16(&ns[82..84]),
            };
            let pos = be32(&ns[84..88]) as usize;
            let data = match ntype {
                1 => {
                    if !(1..=8).contains(&len) {
                        return Err(at(&format!("numeric length {len} not in 1..=8")));
                    }
                    ColumnData::Numeric {
                        values: Vec::new(),
                        special: Vec::new(),
                    }
                }
                2 => {
                    if len == 0 {
                        return Err(at("character length 0"));
                    }
                    ColumnData::Char(Vec::new())
                }
                t => return Err(at(&format!("unknown variable type {t}"))),
            };
            obs_len = obs_len.max(pos + len);
            positions.push(pos);
            columns.push(Column {
                name: vname,
                label: vlabel,
                format,
                format_justify: just,
                informat,
                length: len,
                data,
            });
        }
        let oh = self.expect_record("OBS header")?;
        if oh[..48] != OBS_HEADER[..48] {
            return Err(self.err_at("expected OBS header record", self.records));
        }
        if obs_len == 0 && nvar > 0 {
            return Err(self.err_at("observation length is zero", self.records));
        }
        self.member = Some(MemberHeader {
            name,
            label,
            ds_type,
            meta,
            columns,
            positions,
            obs_len,
        });
        self.data.clear();
        self.confirmed = 0;
        self.data_offset = self.records * 80;
        self.finished_member = false;
        self.member_ended = false;
        Ok(self.member.as_ref())
    }

    /// Reads up to `max_rows` observations of the current member into fresh columns
    /// (metadata copied from the header). `Ok(None)` when the member is exhausted.
    pub fn read_batch(&mut self, max_rows: usize) -> Result<Option<Vec<Column>>> {
        if self.finished_member {
            return Ok(None);
        }
        let Some(m) = &self.member else {
            return Ok(None);
        };
        let obs_len = m.obs_len;
        let mut out: Vec<Column> = m.columns.clone();
        if out.is_empty() {
            // A member without variables: skip to the next member header.
            while let Some((b, _)) = self.read_record()? {
                if b[..48] == MEMBER_PREFIX[..] {
                    self.pending_member = Some(b);
                    break;
                }
            }
            self.finished_member = true;
            return Ok(None);
        }
        let mut start = 0usize;
        let mut rows = 0usize;
        loop {
            while rows < max_rows && start + obs_len <= self.confirmed {
                self.decode_obs(&mut out, start);
                start += obs_len;
                rows += 1;
            }
            if rows >= max_rows || self.member_ended {
                break;
            }
            match self.read_record()? {
                Some((b, 80)) if b[..48] == MEMBER_PREFIX[..] => {
                    self.pending_member = Some(b);
                    self.end_data(start, obs_len)?;
                }
                Some((b, 80)) => {
                    self.confirmed = self.data.len();
                    self.data.extend_from_slice(&b);
                }
                Some((_, n)) => {
                    return Err(StatsError::Xport {
                        message: format!(
                            "file ends inside an 80-byte record ({n} bytes): truncated data"
                        ),
                        record: self.records,
                        offset: (self.records - 1) * 80 + n as u64,
                    });
                }
                None => self.end_data(start, obs_len)?,
            }
        }
        self.data.drain(..start);
        self.confirmed -= start;
        self.data_offset += start as u64;
        if self.member_ended && self.confirmed < obs_len {
            self.finished_member = true;
        }
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// At the end of a member's data: fixes how many observations are real (trailing
    /// all-blank observations inside the final padding are dropped).
    fn end_data(&mut self, start: usize, obs_len: usize) -> Result<()> {
        self.member_ended = true;
        let total = self.data.len();
        let mut n_obs = (total - start) / obs_len;
        while n_obs > 0 {
            let s = start + (n_obs - 1) * obs_len;
            let blank = self.data[s..s + obs_len].iter().all(|&c| c == b' ');
            if blank && total - s < 80 {
                n_obs -= 1;
            } else {
                break;
            }
        }
        let end = start + n_obs * obs_len;
        if let Some(p) = self.data[end..].iter().position(|&c| c != b' ') {
            let off = self.data_offset + (end + p) as u64;
            return Err(StatsError::Xport {
                message: format!(
                    "incomplete observation at the end of member data ({} bytes, observation length {obs_len})",
                    total - end
                ),
                record: off / 80 + 1,
                offset: off,
            });
        }
        self.confirmed = end;
        Ok(())
    }

    fn decode_obs(&self, out: &mut [Column], start: usize) {
        let Some(m) = &self.member else { return };
        let obs = &self.data[start..start + m.obs_len];
        for (col, &pos) in out.iter_mut().zip(&m.positions) {
            let b = &obs[pos..pos + col.length];
            match &mut col.data {
                ColumnData::Numeric { values, special } => {
                    let first = b[0];
                    if b[1..].iter().all(|&c| c == 0)
                        && let Some(mc) = Missing::from_byte(first)
                    {
                        if mc != Missing::Dot {
                            special.push((values.len(), mc));
                        }
                        values.push(f64::NAN);
                    } else {
                        values.push(ibm_to_ieee(b));
                    }
                }
                ColumnData::Char(v) => v.push(trim_text(b)),
            }
        }
    }

    /// Reads the rest of the current member into a dataset.
    pub fn read_member(&mut self) -> Result<Dataset> {
        let Some(m) = &self.member else {
            return Err(StatsError::Invalid("no current member".into()));
        };
        let mut ds = Dataset {
            name: m.name.clone(),
            label: m.label.clone(),
            ds_type: m.ds_type.clone(),
            columns: m.columns.clone(),
            meta: m.meta.clone(),
            rows_from: crate::data::RowOrigin::Rows,
        };
        while let Some(batch) = self.read_batch(1 << 16)? {
            for (c, b) in ds.columns.iter_mut().zip(batch) {
                match (&mut c.data, b.data) {
                    (
                        ColumnData::Numeric { values, special },
                        ColumnData::Numeric {
                            values: bv,
                            special: bs,
                        },
                    ) => {
                        let off = values.len();
                        special.extend(bs.into_iter().map(|(r, mc)| (r + off, mc)));
                        values.extend(bv);
                    }
                    (ColumnData::Char(v), ColumnData::Char(bv)) => v.extend(bv),
                    _ => {}
                }
            }
        }
        Ok(ds)
    }
}

/// Reads every member of an XPORT file.
pub fn read_xport<R: Read>(r: R) -> Result<Vec<Dataset>> {
    let mut rd = XportReader::new(r)?;
    let mut out = Vec::new();
    while rd.next_member()?.is_some() {
        out.push(rd.read_member()?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

fn pad(s: &str, n: usize, what: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() > n {
        return Err(StatsError::XportWrite(format!(
            "{what} `{s}` is longer than {n} bytes"
        )));
    }
    let mut v = b.to_vec();
    v.resize(n, b' ');
    Ok(v)
}

/// `ddMMMyy:hh:mm:ss` for the current UTC time.
pub fn sas_timestamp_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    const MON: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    format!(
        "{:02}{}{:02}:{:02}:{:02}:{:02}",
        d,
        MON[(m - 1) as usize],
        y.rem_euclid(100),
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 8
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Writes datasets as one XPORT v5 library. Refuses (with a message naming the column)
/// names that are not valid 8-character SAS names, labels over 40 bytes, character values
/// over 200 bytes and numbers outside the IBM range.
pub fn write_xport<W: Write>(w: W, datasets: &[&Dataset]) -> Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
    let now = sas_timestamp_now();
    let lib_meta = datasets.first().map(|d| d.meta.clone()).unwrap_or_default();
    let created = if lib_meta.created.is_empty() {
        now.clone()
    } else {
        lib_meta.created.clone()
    };
    let modified = if lib_meta.modified.is_empty() {
        created.clone()
    } else {
        lib_meta.modified.clone()
    };
    let version = if lib_meta.sas_version.is_empty() {
        "9.4".to_string()
    } else {
        lib_meta.sas_version.clone()
    };
    let os = if lib_meta.os.is_empty() {
        "Trellis".to_string()
    } else {
        lib_meta.os.clone()
    };
    w.write_all(LIB_HEADER)?;
    let mut r = Vec::with_capacity(80);
    r.extend_from_slice(b"SAS     SAS     SASLIB  ");
    r.extend(pad(&version, 8, "SAS version")?);
    r.extend(pad(&os, 8, "OS name")?);
    r.extend([b' '; 24]);
    r.extend(pad(&created, 16, "timestamp")?);
    w.write_all(&r)?;
    w.write_all(&pad(&modified, 80, "timestamp")?)?;
    for ds in datasets {
        write_member(&mut w, ds, &created, &modified, &version, &os)?;
    }
    w.flush()?;
    Ok(())
}

fn write_member<W: Write>(
    w: &mut W,
    ds: &Dataset,
    created: &str,
    modified: &str,
    version: &str,
    os: &str,
) -> Result<()> {
    if !valid_name(&ds.name) {
        return Err(StatsError::XportWrite(format!(
            "dataset name `{}` is not a SAS name of 1–8 characters",
            ds.name
        )));
    }
    let nrows = ds.nrows();
    // lengths and positions
    let mut lengths = Vec::with_capacity(ds.columns.len());
    for c in &ds.columns {
        if !valid_name(&c.name) {
            return Err(StatsError::XportWrite(format!(
                "variable name `{}` is not a SAS name of 1–8 characters",
                c.name
            )));
        }
        if c.data.len() != nrows {
            return Err(StatsError::XportWrite(format!(
                "variable `{}` has {} values, expected {nrows}",
                c.name,
                c.data.len()
            )));
        }
        let len = match &c.data {
            ColumnData::Numeric { .. } => {
                if !(2..=8).contains(&c.length) {
                    return Err(StatsError::XportWrite(format!(
                        "numeric variable `{}` has length {}; XPORT allows 2–8",
                        c.name, c.length
                    )));
                }
                c.length
            }
            ColumnData::Char(v) => {
                let maxlen = v.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
                let len = c.length.max(maxlen);
                if len > 200 {
                    return Err(StatsError::XportWrite(format!(
                        "character variable `{}` needs {len} bytes; XPORT v5 allows 200",
                        c.name
                    )));
                }
                len
            }
        };
        lengths.push(len);
    }
    let obs_len: usize = lengths.iter().sum();
    w.write_all(
        b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140  ",
    )?;
    w.write_all(DSCRPTR_HEADER)?;
    let mut r = Vec::with_capacity(80);
    r.extend_from_slice(b"SAS     ");
    r.extend(pad(&ds.name, 8, "dataset name")?);
    r.extend_from_slice(b"SASDATA ");
    let mv = if ds.meta.sas_version.is_empty() {
        version
    } else {
        &ds.meta.sas_version
    };
    let mo = if ds.meta.os.is_empty() {
        os
    } else {
        &ds.meta.os
    };
    let mc = if ds.meta.created.is_empty() {
        created
    } else {
        &ds.meta.created
    };
    let mm = if ds.meta.modified.is_empty() {
        modified
    } else {
        &ds.meta.modified
    };
    r.extend(pad(mv, 8, "SAS version")?);
    r.extend(pad(mo, 8, "OS name")?);
    r.extend([b' '; 24]);
    r.extend(pad(mc, 16, "timestamp")?);
    w.write_all(&r)?;
    r.clear();
    r.extend(pad(mm, 16, "timestamp")?);
    r.extend([b' '; 16]);
    r.extend(pad(&ds.label, 40, "dataset label")?);
    r.extend(pad(&ds.ds_type, 8, "dataset type")?);
    w.write_all(&r)?;
    let nvar = ds.columns.len();
    if nvar > 9999 {
        return Err(StatsError::XportWrite(format!(
            "{nvar} variables; XPORT v5 allows 9999"
        )));
    }
    w.write_all(
        format!(
            "HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000{nvar:04}00000000000000000000  "
        )
        .as_bytes(),
    )?;
    let mut ns_all = Vec::with_capacity(nvar * 140 + 80);
    let mut pos = 0usize;
    for (i, (c, &len)) in ds.columns.iter().zip(&lengths).enumerate() {
        let mut ns = Vec::with_capacity(140);
        ns.extend((if c.is_numeric() { 1u16 } else { 2u16 }).to_be_bytes());
        ns.extend(0u16.to_be_bytes());
        ns.extend((len as u16).to_be_bytes());
        ns.extend(((i + 1) as u16).to_be_bytes());
        ns.extend(pad(&c.name, 8, "variable name")?);
        ns.extend(pad(&c.label, 40, &format!("label of `{}`", c.name))?);
        ns.extend(pad(&c.format.name, 8, &format!("format of `{}`", c.name))?);
        ns.extend(c.format.width.to_be_bytes());
        ns.extend(c.format.decimals.to_be_bytes());
        ns.extend(c.format_justify.to_be_bytes());
        ns.extend([0u8; 2]);
        ns.extend(pad(
            &c.informat.name,
            8,
            &format!("informat of `{}`", c.name),
        )?);
        ns.extend(c.informat.width.to_be_bytes());
        ns.extend(c.informat.decimals.to_be_bytes());
        ns.extend((pos as u32).to_be_bytes());
        ns.extend([0u8; 52]);
        ns_all.extend(ns);
        pos += len;
    }
    let padded = ns_all.len().div_ceil(80) * 80;
    ns_all.resize(padded, b' ');
    w.write_all(&ns_all)?;
    w.write_all(OBS_HEADER)?;
    // observations
    let mut obs = vec![0u8; obs_len];
    let mut special_idx = vec![0usize; nvar];
    let mut written = 0usize;
    for row in 0..nrows {
        let mut p = 0;
        for (j, (c, &len)) in ds.columns.iter().zip(&lengths).enumerate() {
            let field = &mut obs[p..p + len];
            match &c.data {
                ColumnData::Numeric { values, special } => {
                    let x = values[row];
                    if x.is_nan() {
                        let mut code = Missing::Dot;
                        let k = &mut special_idx[j];
                        while *k < special.len() && special[*k].0 < row {
                            *k += 1;
                        }
                        if *k < special.len() && special[*k].0 == row {
                            code = special[*k].1;
                        }
                        field.fill(0);
                        field[0] = code.byte();
                    } else {
                        let b = ieee_to_ibm(x).ok_or_else(|| {
                            StatsError::XportWrite(format!(
                                "variable `{}` row {}: {x} is outside the IBM floating-point range",
                                c.name,
                                row + 1
                            ))
                        })?;
                        field.copy_from_slice(&b[..len]);
                    }
                }
                ColumnData::Char(v) => {
                    let s = v[row].as_bytes();
                    field[..s.len()].copy_from_slice(s);
                    field[s.len()..].fill(b' ');
                }
            }
            p += len;
        }
        w.write_all(&obs)?;
        written += obs_len;
    }
    let rem = written % 80;
    if rem != 0 {
        w.write_all(&vec![b' '; 80 - rem])?;
    }
    Ok(())
}
