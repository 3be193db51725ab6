//! A small in-memory UDF image builder for the hostile-image tests: every
//! structure the reader understands, written by hand from ECMA-167/OSTA UDF,
//! with knobs for the forms genisoimage never writes (extended file entries,
//! long and extended allocation descriptors, continuation extents, a UDF 2.50
//! metadata partition, symlinks, unrecorded extents) and for breaking things
//! (loops, bad tags).

pub const BS: usize = 2048;
/// First sector of the partition.
pub const PART_START: u32 = 264;
/// Partition length in blocks.
pub const PART_BLOCKS: u32 = 512;
/// Where the metadata file and its mirror lie (physical blocks), and its two
/// extents (physical start, blocks): deliberately not contiguous.
const META_FILE: u32 = 1;
const META_MIRROR: u32 = 2;
const META_SPLIT: [(u32, u32); 2] = [(8, 40), (60, 40)];
const META_WHOLE: [(u32, u32); 1] = [(8, 80)];
const META_BLOCKS: u32 = 80;

/// The descriptor tag CRC of ECMA-167 3/7.2.1.1 (CRC-16/XMODEM: polynomial
/// 0x1021, initial value 0).
pub fn crc(data: &[u8]) -> u16 {
    crc::Crc::<u16>::new(&crc::CRC_16_XMODEM).checksum(data)
}

/// Fills in the tag of the descriptor `d` (whose whole length is `d.len()`).
pub fn put_tag(d: &mut [u8], id: u16, loc: u32) {
    d[0..2].copy_from_slice(&id.to_le_bytes());
    d[2..4].copy_from_slice(&3u16.to_le_bytes());
    let crc_len = (d.len() - 16) as u16;
    let c = crc(&d[16..]);
    d[8..10].copy_from_slice(&c.to_le_bytes());
    d[10..12].copy_from_slice(&crc_len.to_le_bytes());
    d[12..16].copy_from_slice(&loc.to_le_bytes());
    d[4] = 0;
    let sum = d[..16].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    d[4] = sum;
}

/// CS0 with compression ID 8 when every char is Latin-1, else 16.
pub fn cs0(name: &str, force16: bool) -> Vec<u8> {
    if !force16 && name.chars().all(|c| (c as u32) < 256) {
        let mut v = vec![8];
        v.extend(name.chars().map(|c| c as u8));
        v
    } else {
        let mut v = vec![16];
        for u in name.encode_utf16() {
            v.extend_from_slice(&u.to_be_bytes());
        }
        v
    }
}

fn dstring(s: &str, size: usize) -> Vec<u8> {
    let mut v = cs0(s, false);
    let used = v.len();
    v.resize(size, 0);
    v[size - 1] = used as u8;
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ad {
    Short,
    Long,
    Ext,
    Embedded,
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub efe: bool,
    pub ad: Ad,
    pub metadata: bool,
    /// Most blocks per extent: small values force many descriptors.
    pub extent_blocks: u32,
    /// Put every descriptor after the first in an allocation extent descriptor.
    pub aed: bool,
    /// Make the allocation extent descriptor continue into itself.
    pub aed_loop: bool,
    pub name16: bool,
    /// Record the metadata file in two separate extents (7-Zip reads only one).
    pub meta_split: bool,
    /// Bytes of implementation use in every file identifier descriptor.
    pub fid_iu: usize,
    /// Bytes of extended attributes in every file entry (ahead of the ADs).
    pub ea: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            efe: false,
            ad: Ad::Short,
            metadata: false,
            extent_blocks: 1 << 20,
            aed: false,
            aed_loop: false,
            name16: false,
            meta_split: true,
            fid_iu: 0,
            ea: 0,
        }
    }
}

pub enum Node {
    File(Vec<u8>),
    Dir(Vec<(String, Node)>),
    /// A symlink with raw ECMA-167 path components.
    Link(Vec<u8>),
    /// A file of this size recorded as one allocated-but-unrecorded extent.
    Unrecorded(u64),
    /// A directory entry pointing at the ICB of the directory `n` levels up
    /// (0 = the directory holding the entry).
    Ancestor(usize),
    /// A file whose identifier descriptor has the "hidden" (existence) bit.
    Hidden(Vec<u8>),
    /// A file whose identifier descriptor has the "deleted" bit.
    Deleted(Vec<u8>),
}

/// Path components for a symlink: (type, identifier).
pub fn link(components: &[(u8, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(t, name) in components {
        let id = if name.is_empty() {
            Vec::new()
        } else {
            cs0(name, false)
        };
        v.extend_from_slice(&[t, id.len() as u8, 0, 0]);
        v.extend(id);
    }
    v
}

pub struct Builder {
    pub img: Vec<u8>,
    pub o: Opts,
    next_phys: u32,
    next_meta: u32,
    /// (partition, block) of every directory ICB, by path.
    pub dirs: Vec<(String, u16, u32)>,
}

impl Builder {
    fn meta_extents(&self) -> &'static [(u32, u32)] {
        if self.o.meta_split {
            &META_SPLIT
        } else {
            &META_WHOLE
        }
    }

    fn icb_part(&self) -> u16 {
        u16::from(self.o.metadata)
    }

    pub fn offset(&self, part: u16, lbn: u32) -> usize {
        let phys = if part == 0 {
            lbn
        } else {
            let mut l = lbn;
            let mut phys = None;
            for &(start, n) in self.meta_extents() {
                if l < n {
                    phys = Some(start + l);
                    break;
                }
                l -= n;
            }
            phys.expect("metadata block out of range")
        };
        assert!(phys < PART_BLOCKS, "partition full");
        (PART_START + phys) as usize * BS
    }

    fn alloc(&mut self, part: u16, blocks: u32) -> u32 {
        let blocks = blocks.max(1);
        if part == 0 {
            let l = self.next_phys;
            self.next_phys += blocks;
            assert!(self.next_phys <= PART_BLOCKS, "partition full");
            l
        } else {
            let l = self.next_meta;
            self.next_meta += blocks;
            assert!(self.next_meta <= META_BLOCKS, "metadata partition full");
            l
        }
    }

    fn write(&mut self, part: u16, lbn: u32, data: &[u8]) {
        for (i, chunk) in data.chunks(BS).enumerate() {
            let off = self.offset(part, lbn + i as u32);
            self.img[off..off + chunk.len()].copy_from_slice(chunk);
        }
    }

    fn encode_ad(&self, ad: Ad, kind: u32, len: u64, part: u16, lbn: u32) -> Vec<u8> {
        let l = (kind << 30) | len as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&l.to_le_bytes());
        match ad {
            Ad::Short => v.extend_from_slice(&lbn.to_le_bytes()),
            Ad::Long => {
                v.extend_from_slice(&lbn.to_le_bytes());
                v.extend_from_slice(&part.to_le_bytes());
                v.extend_from_slice(&[0; 6]);
            }
            Ad::Ext => {
                let rec = if kind == 0 { len as u32 } else { 0 };
                v.extend_from_slice(&rec.to_le_bytes());
                v.extend_from_slice(&(len as u32).to_le_bytes());
                v.extend_from_slice(&lbn.to_le_bytes());
                v.extend_from_slice(&part.to_le_bytes());
                v.extend_from_slice(&[0; 2]);
            }
            Ad::Embedded => unreachable!(),
        }
        v
    }

    /// Places `data` and returns (ICB flags AD type, allocation area).
    fn place(&mut self, data: &[u8], unrecorded: bool, is_dir: bool) -> (u16, Vec<u8>) {
        let ad = self.o.ad;
        if ad == Ad::Embedded && !unrecorded {
            return (3, data.to_vec());
        }
        let ad = if ad == Ad::Embedded { Ad::Long } else { ad };
        // Short ADs address the ICB's partition; everything else can say.
        let part = if ad == Ad::Short || is_dir {
            self.icb_part()
        } else {
            0
        };
        let blocks = data.len().div_ceil(BS) as u32;
        let lbn = self.alloc(part, blocks);
        if !unrecorded {
            self.write(part, lbn, data);
        }
        let mut ads = Vec::new();
        let mut pos = 0u64;
        let step = u64::from(self.o.extent_blocks) * BS as u64;
        while pos < data.len() as u64 {
            let len = step.min(data.len() as u64 - pos);
            ads.push(self.encode_ad(
                ad,
                u32::from(unrecorded),
                len,
                part,
                lbn + (pos / BS as u64) as u32,
            ));
            pos += len;
        }
        let flag = match ad {
            Ad::Short => 0,
            Ad::Long => 1,
            _ => 2,
        };
        if self.o.aed && ads.len() > 1 {
            let ip = self.icb_part();
            let aed = self.alloc(ip, 1);
            let mut body: Vec<u8> = ads[1..].concat();
            if self.o.aed_loop {
                body.extend(self.encode_ad(ad, 3, BS as u64, ip, aed));
            }
            let mut d = vec![0u8; 24 + body.len()];
            d[20..24].copy_from_slice(&(body.len() as u32).to_le_bytes());
            d[24..].copy_from_slice(&body);
            put_tag(&mut d, 258, aed);
            self.write(ip, aed, &d);
            let mut area = ads[0].clone();
            area.extend(self.encode_ad(ad, 3, BS as u64, ip, aed));
            (flag, area)
        } else {
            (flag, ads.concat())
        }
    }

    fn write_fe(&mut self, part: u16, lbn: u32, file_type: u8, size: u64, flag: u16, area: &[u8]) {
        let ea = if file_type >= 250 { 0 } else { self.o.ea };
        let base = if self.o.efe { 216 } else { 176 };
        let mut d = vec![0u8; base + ea + area.len()];
        assert!(d.len() <= BS, "file entry too big");
        d[20..22].copy_from_slice(&4u16.to_le_bytes());
        d[24..26].copy_from_slice(&1u16.to_le_bytes());
        d[27] = file_type;
        d[34..36].copy_from_slice(&flag.to_le_bytes());
        d[48..50].copy_from_slice(&1u16.to_le_bytes());
        d[56..64].copy_from_slice(&size.to_le_bytes());
        let lad_at = if self.o.efe {
            d[64..72].copy_from_slice(&size.to_le_bytes());
            212
        } else {
            172
        };
        d[lad_at - 4..lad_at].copy_from_slice(&(ea as u32).to_le_bytes());
        d[lad_at..lad_at + 4].copy_from_slice(&(area.len() as u32).to_le_bytes());
        for (i, b) in d[base..base + ea].iter_mut().enumerate() {
            *b = 0xa0 ^ i as u8;
        }
        d[base + ea..].copy_from_slice(area);
        put_tag(&mut d, if self.o.efe { 266 } else { 261 }, lbn);
        self.write(part, lbn, &d);
    }

    fn fid(&self, chars: u8, name: &[u8], part: u16, lbn: u32) -> Vec<u8> {
        let iu = self.o.fid_iu;
        let len = (38 + iu + name.len() + 3) & !3;
        let mut d = vec![0u8; len];
        d[16..18].copy_from_slice(&1u16.to_le_bytes());
        d[18] = chars;
        d[19] = name.len() as u8;
        d[20..24].copy_from_slice(&(BS as u32).to_le_bytes());
        d[24..28].copy_from_slice(&lbn.to_le_bytes());
        d[28..30].copy_from_slice(&part.to_le_bytes());
        d[36..38].copy_from_slice(&(iu as u16).to_le_bytes());
        for (i, b) in d[38..38 + iu].iter_mut().enumerate() {
            *b = 0x5a ^ i as u8;
        }
        d[38 + iu..38 + iu + name.len()].copy_from_slice(name);
        put_tag(&mut d, 257, 0);
        d
    }

    fn dir(
        &mut self,
        path: &str,
        me: (u16, u32),
        ancestors: &[(u16, u32)],
        entries: &[(String, Node)],
    ) {
        self.dirs.push((path.to_owned(), me.0, me.1));
        let ip = self.icb_part();
        let parent = *ancestors.last().unwrap_or(&me);
        let mut data = self.fid(8 | 2, &[], parent.0, parent.1);
        let mut chain = ancestors.to_vec();
        chain.push(me);
        for (name, node) in entries {
            let n = cs0(name, self.o.name16);
            let (chars, target) = match node {
                Node::Ancestor(up) => (2, chain[chain.len() - 1 - up]),
                Node::Dir(kids) => {
                    let l = self.alloc(ip, 1);
                    self.dir(&format!("{path}/{name}"), (ip, l), &chain, kids);
                    (2, (ip, l))
                }
                Node::File(bytes) | Node::Hidden(bytes) | Node::Deleted(bytes) => {
                    let l = self.alloc(ip, 1);
                    let (flag, area) = self.place(bytes, false, false);
                    self.write_fe(ip, l, 5, bytes.len() as u64, flag, &area);
                    let chars = match node {
                        Node::Hidden(_) => 1,
                        Node::Deleted(_) => 4,
                        _ => 0,
                    };
                    (chars, (ip, l))
                }
                Node::Unrecorded(size) => {
                    let l = self.alloc(ip, 1);
                    let (flag, area) = self.place(&vec![0; *size as usize], true, false);
                    self.write_fe(ip, l, 5, *size, flag, &area);
                    (0, (ip, l))
                }
                Node::Link(bytes) => {
                    let l = self.alloc(ip, 1);
                    let (flag, area) = self.place(bytes, false, false);
                    self.write_fe(ip, l, 12, bytes.len() as u64, flag, &area);
                    (0, (ip, l))
                }
            };
            data.extend(self.fid(chars, &n, target.0, target.1));
        }
        let (flag, area) = self.place(&data, false, true);
        self.write_fe(me.0, me.1, 4, data.len() as u64, flag, &area);
    }

    fn vds(&mut self, at: u32, label: &str) {
        let mut pvd = vec![0u8; 512];
        pvd[24..56].copy_from_slice(&dstring(label, 32));
        put_tag(&mut pvd, 1, at);
        let mut pd = vec![0u8; 512];
        pd[20..22].copy_from_slice(&1u16.to_le_bytes());
        pd[25..31].copy_from_slice(b"+NSR03");
        pd[184..188].copy_from_slice(&1u32.to_le_bytes());
        pd[188..192].copy_from_slice(&PART_START.to_le_bytes());
        pd[192..196].copy_from_slice(&PART_BLOCKS.to_le_bytes());
        put_tag(&mut pd, 5, at + 1);
        let mut maps = vec![1u8, 6, 1, 0, 0, 0];
        if self.o.metadata {
            let mut m = vec![0u8; 64];
            m[0] = 2;
            m[1] = 64;
            m[5..28].copy_from_slice(b"*UDF Metadata Partition");
            m[28..30].copy_from_slice(&0x0250u16.to_le_bytes());
            m[36..38].copy_from_slice(&1u16.to_le_bytes());
            m[40..44].copy_from_slice(&META_FILE.to_le_bytes());
            m[44..48].copy_from_slice(&META_MIRROR.to_le_bytes());
            m[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
            m[52..56].copy_from_slice(&32u32.to_le_bytes());
            m[56..58].copy_from_slice(&1u16.to_le_bytes());
            maps.extend(m);
        }
        let mut lvd = vec![0u8; 440 + maps.len()];
        lvd[84..212].copy_from_slice(&dstring(label, 128));
        lvd[212..216].copy_from_slice(&(BS as u32).to_le_bytes());
        lvd[217..236].copy_from_slice(b"*OSTA UDF Compliant");
        let rev: u16 = if self.o.metadata { 0x0250 } else { 0x0201 };
        lvd[240..242].copy_from_slice(&rev.to_le_bytes());
        lvd[248..252].copy_from_slice(&(BS as u32).to_le_bytes());
        // The file set descriptor is the first block of the ICB partition.
        lvd[256..258].copy_from_slice(&self.icb_part().to_le_bytes());
        lvd[264..268].copy_from_slice(&(maps.len() as u32).to_le_bytes());
        lvd[268..272].copy_from_slice(&(1 + u32::from(self.o.metadata)).to_le_bytes());
        lvd[440..].copy_from_slice(&maps);
        put_tag(&mut lvd, 6, at + 2);
        let mut td = vec![0u8; 512];
        put_tag(&mut td, 8, at + 3);
        for (i, d) in [pvd, pd, lvd, td].iter().enumerate() {
            let off = (at as usize + i) * BS;
            self.img[off..off + d.len()].copy_from_slice(d);
        }
    }
}

/// Main VDS and reserve VDS sectors.
pub const MAIN_VDS: u32 = 32;
pub const RESERVE_VDS: u32 = 48;

/// Builds an image whose root directory holds `root`.
pub fn build(o: Opts, label: &str, root: &[(String, Node)]) -> Builder {
    let total = (PART_START + PART_BLOCKS) as usize * BS;
    let mut b = Builder {
        img: vec![0; total],
        o,
        next_phys: 0,
        next_meta: 0,
        dirs: Vec::new(),
    };
    for (i, id) in [b"BEA01", b"NSR03", b"TEA01"].iter().enumerate() {
        let off = (16 + i) * BS;
        b.img[off + 1..off + 6].copy_from_slice(*id);
        b.img[off + 6] = 1;
    }
    if b.o.metadata {
        b.next_phys = 100;
        for (lbn, ft) in [(META_FILE, 250u8), (META_MIRROR, 251)] {
            let mut area = Vec::new();
            for &(start, n) in b.meta_extents() {
                area.extend_from_slice(&(n * BS as u32).to_le_bytes());
                area.extend_from_slice(&start.to_le_bytes());
            }
            let efe = b.o.efe;
            b.o.efe = true;
            b.write_fe(0, lbn, ft, u64::from(META_BLOCKS) * BS as u64, 0, &area);
            b.o.efe = efe;
        }
    }
    let ip = b.icb_part();
    let fsd = b.alloc(ip, 1);
    let root_lbn = b.alloc(ip, 1);
    let mut d = vec![0u8; 512];
    d[400..404].copy_from_slice(&(BS as u32).to_le_bytes());
    d[404..408].copy_from_slice(&root_lbn.to_le_bytes());
    d[408..410].copy_from_slice(&ip.to_le_bytes());
    put_tag(&mut d, 256, fsd);
    b.write(ip, fsd, &d);
    b.dir("", (ip, root_lbn), &[], root);
    b.vds(MAIN_VDS, label);
    b.vds(RESERVE_VDS, label);
    let last = (PART_START + PART_BLOCKS) as usize;
    b.img.resize((last + 1) * BS, 0);
    let mut a = vec![0u8; 512];
    a[16..20].copy_from_slice(&(16 * BS as u32).to_le_bytes());
    a[20..24].copy_from_slice(&MAIN_VDS.to_le_bytes());
    a[24..28].copy_from_slice(&(16 * BS as u32).to_le_bytes());
    a[28..32].copy_from_slice(&RESERVE_VDS.to_le_bytes());
    put_tag(&mut a, 2, 256);
    b.img[256 * BS..256 * BS + 512].copy_from_slice(&a);
    // The spec wants the anchor in at least two of sector 256, N-256 and N-1.
    put_tag(&mut a, 2, last as u32);
    b.img[last * BS..last * BS + 512].copy_from_slice(&a);
    b
}

/// Where the interesting bytes of a hand-built image are: the recognition
/// sequence, both descriptor sequences, the anchor and the start of the
/// partition (metadata file, file set descriptor, entries, directories).
pub fn mutation_target(idx: usize) -> usize {
    let regions = [
        (16 * BS, 3 * BS),
        (MAIN_VDS as usize * BS, 4 * BS),
        (RESERVE_VDS as usize * BS, 4 * BS),
        (256 * BS, 512),
        (PART_START as usize * BS, 120 * BS),
    ];
    let total: usize = regions.iter().map(|r| r.1).sum();
    let mut i = idx % total;
    for (start, len) in regions {
        if i < len {
            return start + i;
        }
        i -= len;
    }
    unreachable!()
}

/// One of four small images in different forms, for mutation testing and
/// fuzzing: short ADs; a metadata partition with extended file entries, long
/// ADs and continuation extents; extended ADs with 16-bit names; embedded data
/// in a metadata partition.
pub fn fuzz_base(form: u8) -> Vec<u8> {
    let d = Opts::default;
    let o = match form % 4 {
        0 => d(),
        1 => Opts {
            metadata: true,
            efe: true,
            ad: Ad::Long,
            extent_blocks: 1,
            aed: true,
            ..d()
        },
        2 => Opts {
            ad: Ad::Ext,
            extent_blocks: 2,
            name16: true,
            ..d()
        },
        _ => Opts {
            ad: Ad::Embedded,
            metadata: true,
            ..d()
        },
    };
    let n = |s: &str| s.to_owned();
    let tree = vec![
        (n("README.TXT"), Node::File(b"read me".to_vec())),
        (
            n("sources"),
            Node::Dir(vec![
                (
                    n("install.wim"),
                    Node::File((0..1500u32).map(|i| i as u8).collect()),
                ),
                (n("sub"), Node::Dir(vec![(n("x"), Node::File(vec![1; 10]))])),
            ]),
        ),
        (n("link"), Node::Link(link(&[(3, ""), (5, "sources")]))),
        (n("holes"), Node::Unrecorded(5000)),
    ];
    build(o, "FUZZ", &tree).img
}
