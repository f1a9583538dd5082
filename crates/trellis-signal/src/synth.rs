//! Synthetic FAERS-format extracts for tests and benchmarks.
//!
//! Shape (after the generator in the research notes): each report has
//! 1 + Poisson(1.2) distinct drugs and 1 + Poisson(1.8) distinct preferred
//! terms; drug and event popularity follow Zipf(1.05); each drug has a
//! 25-event profile with decaying weights and 35% of event rows come from a
//! co-reported drug's profile (over-dispersion, as in real data); a set of
//! injected true signals adds the signal event with probability 0.2 when the
//! drug is present; a share of cases has an older second version (different
//! event list) that deduplication must drop. Roles: the first drug is PS,
//! others SS (30%), C (60%) or I (10%). Sex, age and FDA date are filled in.
//! The injected signals are written to `signals.csv`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result, io_err};

/// Generator settings.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub reports: usize,
    pub drugs: usize,
    pub events: usize,
    pub signals: usize,
    /// Share of cases that also have an older version.
    pub duplicate_rate: f64,
    pub quarters: usize,
    pub zip: bool,
    pub seed: u64,
}

impl SynthConfig {
    pub fn new(reports: usize) -> SynthConfig {
        SynthConfig {
            reports,
            drugs: 4000,
            events: 2000,
            signals: 200,
            duplicate_rate: 0.05,
            quarters: 1,
            zip: false,
            seed: 1,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct SynthSummary {
    pub files: Vec<PathBuf>,
    pub cases: usize,
    pub versions: usize,
    pub drug_rows: usize,
    pub reac_rows: usize,
    pub signals: Vec<(String, String)>,
}

/// xoshiro256** seeded by splitmix64.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut s = [0u64; 4];
        for x in &mut s {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut v = z;
            v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *x = v ^ (v >> 31);
        }
        Rng(s)
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    pub fn poisson(&mut self, mean: f64) -> usize {
        let l = (-mean).exp();
        let mut k = 0;
        let mut p = self.f64();
        while p > l {
            k += 1;
            p *= self.f64();
        }
        k
    }
}

/// Cumulative Zipf(s) table over `n` items.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|k| {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            acc
        })
        .collect();
    for x in &mut cdf {
        *x /= acc;
    }
    cdf
}

fn draw(cdf: &[f64], rng: &mut Rng) -> usize {
    let u = rng.f64();
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
}

fn mix(a: u64, b: u64) -> u64 {
    let mut r = Rng::new(a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b);
    r.next_u64()
}

struct Model {
    drug_cdf: Vec<f64>,
    event_cdf: Vec<f64>,
    /// Per drug: 25 profile events and their cumulative weights.
    profiles: Vec<([u32; 25], [f64; 25])>,
    /// Per drug: injected signal event, if any.
    signal_of: Vec<Option<u32>>,
    cfg: SynthConfig,
}

pub fn drug_name(d: usize) -> String {
    format!("DRUG {d:05}")
}

pub fn event_name(e: usize) -> String {
    format!("EVENT TERM {e:05}")
}

impl Model {
    fn new(cfg: &SynthConfig) -> Model {
        let profiles = (0..cfg.drugs)
            .map(|d| {
                let mut ev = [0u32; 25];
                let mut w = [0.0; 25];
                let mut acc = 0.0;
                for k in 0..25 {
                    ev[k] =
                        (mix(cfg.seed ^ 0xABCD, (d * 25 + k) as u64) % cfg.events as u64) as u32;
                    acc += 0.8f64.powi(k as i32);
                    w[k] = acc;
                }
                for x in &mut w {
                    *x /= acc;
                }
                (ev, w)
            })
            .collect();
        let mut signal_of = vec![None; cfg.drugs];
        let mut rng = Rng::new(cfg.seed ^ 0x5151);
        let lo = 10.min(cfg.drugs.saturating_sub(1));
        let span = cfg.drugs.saturating_sub(lo).max(1);
        let mut placed = 0;
        let mut tries = 0;
        while placed < cfg.signals.min(span) && tries < 100 * cfg.signals + 100 {
            tries += 1;
            let d = lo + rng.below(span.min(2000));
            if d < cfg.drugs && signal_of[d].is_none() {
                signal_of[d] = Some(rng.below(cfg.events) as u32);
                placed += 1;
            }
        }
        Model {
            drug_cdf: zipf_cdf(cfg.drugs, 1.05),
            event_cdf: zipf_cdf(cfg.events, 1.05),
            profiles,
            signal_of,
            cfg: cfg.clone(),
        }
    }

    fn report(&self, rng: &mut Rng, drugs: &mut Vec<u32>, events: &mut Vec<u32>) {
        drugs.clear();
        events.clear();
        let nd = 1 + rng.poisson(1.2);
        while drugs.len() < nd {
            let d = draw(&self.drug_cdf, rng) as u32;
            if !drugs.contains(&d) {
                drugs.push(d);
            }
        }
        let ne = 1 + rng.poisson(1.8);
        let mut guard = 0;
        while events.len() < ne && guard < 100 {
            guard += 1;
            let e = if rng.f64() < 0.35 {
                let d = drugs[rng.below(drugs.len())] as usize;
                let (ev, w) = &self.profiles[d];
                let u = rng.f64();
                ev[w.partition_point(|&c| c < u).min(24)]
            } else {
                draw(&self.event_cdf, rng) as u32
            };
            if !events.contains(&e) {
                events.push(e);
            }
        }
        for &d in drugs.iter() {
            if let Some(e) = self.signal_of[d as usize]
                && rng.f64() < 0.2
                && !events.contains(&e)
            {
                events.push(e);
            }
        }
    }
}

const DEMO_HEADER: &str = "primaryid$caseid$caseversion$i_f_code$event_dt$mfr_dt$init_fda_dt$fda_dt$rept_cod$auth_num$mfr_num$mfr_sndr$lit_ref$age$age_cod$age_grp$sex$e_sub$wt$wt_cod$rept_dt$to_mfr$occp_cod$reporter_country$occr_country\n";
const DRUG_HEADER: &str = "primaryid$caseid$drug_seq$role_cod$drugname$prod_ai$val_vbm$route$dose_vbm$cum_dose_chr$cum_dose_unit$dechal$rechal$lot_num$exp_dt$nda_num$dose_amt$dose_unit$dose_form$dose_freq\n";
const REAC_HEADER: &str = "primaryid$caseid$pt$drug_rec_act\n";

struct Block {
    demo: Vec<u8>,
    drug: Vec<u8>,
    reac: Vec<u8>,
    versions: usize,
    drug_rows: usize,
    reac_rows: usize,
}

fn gen_block(model: &Model, first_case: usize, n: usize, block_seed: u64) -> Block {
    let mut rng = Rng::new(block_seed);
    let mut b = Block {
        demo: Vec::with_capacity(n * 90),
        drug: Vec::with_capacity(n * 110),
        reac: Vec::with_capacity(n * 80),
        versions: 0,
        drug_rows: 0,
        reac_rows: 0,
    };
    let (mut drugs, mut events) = (Vec::new(), Vec::new());
    let mut ib = itoa::Buffer::new();
    for i in 0..n {
        let caseid = 10_000_000 + first_case + i;
        model.report(&mut rng, &mut drugs, &mut events);
        let year = 2015 + rng.below(10);
        let month = 1 + rng.below(12);
        let day = 1 + rng.below(28);
        let sex = match rng.below(100) {
            0..=54 => "F",
            55..=94 => "M",
            _ => "",
        };
        let (age, age_cod) = match rng.below(100) {
            0..=7 => (String::new(), ""),
            8..=9 => ((1 + rng.below(11)).to_string(), "MON"),
            10..=11 => ((1 + rng.below(8)).to_string(), "DEC"),
            _ => ((1 + rng.below(95)).to_string(), "YR"),
        };
        let dup = rng.f64() < model.cfg.duplicate_rate;
        let versions: &[usize] = if dup { &[1, 2] } else { &[1] };
        for &ver in versions {
            let last = ver == versions.len();
            // The older version has a different (shorter or altered) event list.
            let mut evs = events.clone();
            if !last {
                if evs.len() > 1 {
                    evs.pop();
                } else {
                    evs[0] = draw(&model.event_cdf, &mut rng) as u32;
                }
            }
            let primaryid = caseid * 100 + ver;
            let fda_dt = year * 10_000 + month * 100 + day;
            let pid = ib.format(primaryid).to_owned();
            let cid = ib.format(caseid).to_owned();
            let _ = writeln!(
                b.demo,
                "{pid}${cid}${ver}$I$${}$${fda_dt}$EXP$$MFR-{cid}$SYNTH$${age}${age_cod}$${sex}$Y$$${fda_dt}$N$MD$US$US",
                fda_dt,
            );
            b.versions += 1;
            for (seq, &d) in drugs.iter().enumerate() {
                let role = if seq == 0 {
                    "PS"
                } else {
                    match rng.below(10) {
                        0..=2 => "SS",
                        3..=8 => "C",
                        _ => "I",
                    }
                };
                let ingredient = drug_name(d as usize);
                // Verbatim names vary; the active ingredient is usually present.
                let (verbatim, ai) = match rng.below(20) {
                    0 => (format!("drug {d:05}."), String::new()),
                    1 => (format!("Drug {d:05} 10 MG tablets"), ingredient.clone()),
                    _ => (format!("BRAND{d:05}"), ingredient.clone()),
                };
                let _ = writeln!(
                    b.drug,
                    "{pid}${cid}${}${role}${verbatim}${ai}$1$ORAL$$$$$$$$$$$$",
                    seq + 1
                );
                b.drug_rows += 1;
            }
            for &e in &evs {
                let _ = writeln!(b.reac, "{pid}${cid}${}$", event_name(e as usize));
                b.reac_rows += 1;
            }
        }
    }
    b
}

enum Sink {
    Plain(BufWriter<File>),
    Zip(Box<zip::ZipWriter<BufWriter<File>>>),
}

/// Writes synthetic extracts to `dir`.
pub fn synth(cfg: &SynthConfig, dir: &Path, progress: bool) -> Result<SynthSummary> {
    if cfg.drugs == 0 || cfg.events == 0 || cfg.quarters == 0 {
        return Err(Error::Invalid(
            "drugs, events and quarters must be positive".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let model = Model::new(cfg);
    let mut summary = SynthSummary {
        cases: cfg.reports,
        ..Default::default()
    };
    let bar = crate::pipeline::count_bar(progress, cfg.reports as u64, "synthesizing");
    const BLOCK: usize = 32_768;
    let per_quarter = cfg.reports.div_ceil(cfg.quarters);
    for q in 0..cfg.quarters {
        let start = q * per_quarter;
        let end = ((q + 1) * per_quarter).min(cfg.reports);
        let tag = format!(
            "{:02}Q{}",
            25 - (cfg.quarters - 1 - q) / 4 % 100,
            4 - (cfg.quarters - 1 - q) % 4
        );
        let names = [
            format!("DEMO{tag}.txt"),
            format!("DRUG{tag}.txt"),
            format!("REAC{tag}.txt"),
        ];
        let headers = [DEMO_HEADER, DRUG_HEADER, REAC_HEADER];
        let mut sinks: Vec<Sink> = Vec::new();
        let mut zip_path = None;
        if cfg.zip {
            let p = dir.join(format!("faers_ascii_20{tag}.zip"));
            let f = File::create(&p).map_err(io_err(&p))?;
            sinks.push(Sink::Zip(Box::new(zip::ZipWriter::new(BufWriter::new(f)))));
            zip_path = Some(p);
        } else {
            for n in &names {
                let p = dir.join(n);
                let f = File::create(&p).map_err(io_err(&p))?;
                sinks.push(Sink::Plain(BufWriter::with_capacity(1 << 20, f)));
                summary.files.push(p);
            }
        }
        // Generate all blocks of the quarter in batches; zip needs one file at a time.
        let blocks: Vec<(usize, usize)> = (start..end)
            .step_by(BLOCK)
            .map(|s| (s, (s + BLOCK).min(end)))
            .collect();
        let mut spill: [Vec<u8>; 3] = Default::default();
        let wr = |path: &Path| io_err(path.to_owned());
        for (k, header) in headers.iter().enumerate() {
            match &mut sinks[if cfg.zip { 0 } else { k }] {
                Sink::Plain(w) => w.write_all(header.as_bytes()).map_err(wr(dir))?,
                Sink::Zip(_) => spill[k].extend_from_slice(header.as_bytes()),
            }
        }
        for batch in blocks.chunks(rayon::current_num_threads() * 2) {
            let out: Vec<Block> = batch
                .par_iter()
                .map(|&(s, e)| gen_block(&model, s, e - s, mix(cfg.seed, s as u64)))
                .collect();
            for b in out {
                summary.versions += b.versions;
                summary.drug_rows += b.drug_rows;
                summary.reac_rows += b.reac_rows;
                let parts = [b.demo, b.drug, b.reac];
                for (k, part) in parts.into_iter().enumerate() {
                    match &mut sinks[if cfg.zip { 0 } else { k }] {
                        Sink::Plain(w) => w.write_all(&part).map_err(wr(dir))?,
                        Sink::Zip(_) => spill[k].extend_from_slice(&part),
                    }
                }
            }
            bar.inc(batch.iter().map(|(s, e)| (e - s) as u64).sum());
        }
        for sink in sinks {
            match sink {
                Sink::Plain(mut w) => w.flush().map_err(wr(dir))?,
                Sink::Zip(mut z) => {
                    let p = zip_path.clone().unwrap_or_else(|| dir.to_owned());
                    let zerr = |source| Error::Zip {
                        path: p.clone(),
                        source,
                    };
                    let opts = zip::write::SimpleFileOptions::default()
                        .compression_method(zip::CompressionMethod::Deflated)
                        .large_file(true);
                    for (k, n) in names.iter().enumerate() {
                        z.start_file(format!("ASCII/{n}"), opts).map_err(zerr)?;
                        z.write_all(&spill[k]).map_err(wr(&p))?;
                    }
                    z.finish().map_err(zerr)?;
                    summary.files.push(p);
                }
            }
        }
    }
    bar.finish_and_clear();
    let sig = dir.join("signals.csv");
    let mut text = String::from("drug,event\n");
    for (d, e) in model.signal_of.iter().enumerate() {
        if let Some(e) = e {
            let pair = (drug_name(d), event_name(*e as usize));
            text.push_str(&format!("{},{}\n", pair.0, pair.1));
            summary.signals.push(pair);
        }
    }
    std::fs::write(&sig, text).map_err(io_err(&sig))?;
    summary.files.push(sig);
    Ok(summary)
}
