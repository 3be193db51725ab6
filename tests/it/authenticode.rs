//! Authenticode signatures of UEFI loaders, as `bootstick inspect` reports
//! them, against independent tools: `sbverify` (Debian `sbsigntool`),
//! `osslsigncode` and `pesign`. One ISO carries six El Torito EFI images, each with
//! one loader as `EFI/BOOT/BOOTX64.EFI`: Debian's signed shim (two
//! Microsoft signatures), Debian's signed CD GRUB, a GRUB signed here by
//! `sbsign` with a throw-away key, the same with one byte of its code
//! flipped, the unsigned GRUB, and the signed one with a byte of its RSA
//! signature flipped.

use crate::common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
const SIGNED_GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed";

/// `CN=…` of an OpenSSL one-line name (`/C=US/…/CN=X`) or an RFC 4514 one.
fn cn(name: &str) -> String {
    name.split(['/', ','])
        .find_map(|p| p.trim().strip_prefix("CN="))
        .unwrap_or_else(|| panic!("no CN in {name:?}"))
        .to_owned()
}

/// The "Calculated message digest" osslsigncode reports (lowercase hex).
fn osslsigncode_digest(file: &Path) -> String {
    let out = Command::new("osslsigncode")
        .args(["verify", "-in"])
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Calculated message digest :"))
        .unwrap_or_else(|| panic!("no calculated digest from osslsigncode:\n{text}"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// The Authenticode SHA-256 `pesign -h` computes (lowercase hex). Unlike
/// osslsigncode 2.5 (Debian 12's), which answers "Invalid signature" and no
/// digest for a file `sbsign` signed, pesign hashes any PE, signed or not.
fn pesign_digest(file: &Path) -> String {
    let out = Command::new("pesign")
        .arg("-h")
        .arg("-i")
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("hash:"))
        .unwrap_or_else(|| panic!("no hash from pesign:\n{text}"))
        .trim()
        .to_lowercase()
}

/// The issuers `sbverify --list` names, one per signature, as CNs.
fn sbverify_issuers(file: &Path) -> Vec<String> {
    let out = Command::new("sbverify")
        .arg("--list")
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut issuers = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("image signature issuers:") {
            if let Some(i) = lines.next() {
                issuers.push(cn(i.trim().trim_start_matches("- ")));
            }
        }
    }
    issuers
}

/// `objdump -h`'s file offset of `.text`.
fn text_offset(file: &Path) -> u64 {
    let out = common::run(Command::new("objdump").arg("-h").arg(file));
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(".text"))
        .unwrap_or_else(|| panic!("no .text in {out}"));
    u64::from_str_radix(line.split_whitespace().nth(5).unwrap(), 16).unwrap()
}

/// Where `objdump -p` says the certificate table ("Security Directory",
/// data directory entry 4) starts.
fn cert_table_offset(file: &Path) -> u64 {
    let out = common::run(Command::new("objdump").arg("-p").arg(file));
    let line = out
        .lines()
        .find(|l| l.contains("Security Directory"))
        .unwrap_or_else(|| panic!("no Security Directory in {out}"));
    u64::from_str_radix(line.split_whitespace().nth(2).unwrap(), 16).unwrap()
}

/// A FAT image holding `loader` as `EFI/BOOT/BOOTX64.EFI`.
fn efi_image(dir: &Path, name: &str, loader: &Path) -> PathBuf {
    let img = dir.join(name);
    let kib = std::fs::metadata(loader).unwrap().len() / 1024 + 2048;
    common::run(
        Command::new("mkfs.fat")
            .arg("-C")
            .arg(&img)
            .arg(kib.to_string()),
    );
    let mtools = |cmd: &str| {
        let mut c = Command::new(cmd);
        c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(&img);
        c
    };
    common::run(mtools("mmd").args(["::/EFI", "::/EFI/BOOT"]));
    common::run(mtools("mcopy").arg(loader).arg("::/EFI/BOOT/BOOTX64.EFI"));
    img
}

#[test]
fn inspect_reports_each_loaders_signature_as_sbverify_and_osslsigncode_see_it() {
    let t = "inspect_reports_each_loaders_signature_as_sbverify_and_osslsigncode_see_it";
    if !common::require_tools(
        t,
        &[
            "xorriso",
            "mkfs.fat",
            "mmd",
            "mcopy",
            "openssl",
            "sbsign",
            "sbverify",
            "osslsigncode",
            "pesign",
            "objdump",
        ],
    ) || !common::require_tools(t, common::qemu::STANDALONE_TOOLS)
    {
        return;
    }
    for f in [SHIM, SIGNED_GRUB] {
        if !Path::new(f).is_file() {
            common::skip(
                t,
                &format!("needs {f} (Debian packages shim-signed, grub-efi-amd64-signed)"),
            );
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unsigned = d.join("unsigned.efi");
    std::fs::copy(common::qemu::grub_efi_standalone(), &unsigned).unwrap();
    // A throw-away key and certificate, made here and nowhere else.
    common::run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=bootstick throw-away test key"])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem")),
    );
    let signed = d.join("signed.efi");
    common::run(
        Command::new("sbsign")
            .arg("--key")
            .arg(d.join("key.pem"))
            .arg("--cert")
            .arg(d.join("cert.pem"))
            .arg("--output")
            .arg(&signed)
            .arg(&unsigned),
    );
    let flipped = d.join("flipped.efi");
    std::fs::copy(&signed, &flipped).unwrap();
    common::flip_byte(&flipped, text_offset(&flipped) + 100);
    // A byte near the end of the PKCS#7 DER (`30 82 LL LL`): inside the
    // RSA signature, which sbsign writes last; the image digest still
    // matches.
    let badsig = d.join("badsig.efi");
    std::fs::copy(&signed, &badsig).unwrap();
    let table = cert_table_offset(&badsig);
    let head = std::fs::read(&badsig).unwrap();
    let der = (table + 8) as usize;
    assert_eq!(&head[der..der + 2], [0x30, 0x82], "PKCS#7 DER header");
    let der_len = 4 + u64::from(u16::from_be_bytes([head[der + 2], head[der + 3]]));
    common::flip_byte(&badsig, table + 8 + der_len - 20);
    // The oracles agree on which of them is good.
    let sbverify = |f: &Path| {
        Command::new("sbverify")
            .arg("--cert")
            .arg(d.join("cert.pem"))
            .arg(f)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(sbverify(&signed) && !sbverify(&flipped) && !sbverify(&badsig));

    let root = d.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let loaders = [
        Path::new(SHIM),
        Path::new(SIGNED_GRUB),
        &signed,
        &flipped,
        &unsigned,
        &badsig,
    ];
    let mut args: Vec<String> = Vec::new();
    for (i, l) in loaders.iter().enumerate() {
        efi_image(&root, &format!("efi{i}.img"), l);
        if i > 0 {
            args.push("-eltorito-alt-boot".into());
        }
        args.extend(["-e".into(), format!("efi{i}.img"), "-no-emul-boot".into()]);
    }
    let iso = d.join("loaders.iso");
    common::run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-J"])
            .args(&args)
            .arg("-o")
            .arg(&iso)
            .arg(&root),
    );
    let out = common::bootstick()
        .args(["inspect", "--json"])
        .arg(&iso)
        .output()
        .unwrap();
    let r = common::json_result(&out.stdout);
    let reported = r["uefi_loaders"].as_array().unwrap();
    let at = |i: usize| -> &Value {
        reported
            .iter()
            .find(|l| l["location"] == format!("el-torito #{i}"))
            .unwrap_or_else(|| panic!("no loader of El Torito image #{i}: {r:#}"))
    };
    let sigs = |l: &Value| l["authenticode"]["signatures"].as_array().unwrap().clone();

    // shim: two valid signatures, their issuers as sbverify names them, and
    // its SBAT entries.
    let shim = at(0);
    assert_eq!(shim["authenticode"]["state"], "valid", "{shim:#}");
    let issuers: Vec<String> = sigs(shim)
        .iter()
        .map(|s| cn(s["signer"]["issuer"].as_str().unwrap()))
        .collect();
    assert_eq!(issuers, sbverify_issuers(Path::new(SHIM)), "{shim:#}");
    assert!(issuers.contains(&"Microsoft Corporation UEFI CA 2011".to_owned()));
    assert!(sigs(shim).iter().all(|s| s["state"] == "valid"));
    let chain = sigs(shim)[0]["issuer_chain"].to_string();
    assert!(
        chain.contains("Microsoft Corporation Third Party Marketplace Root"),
        "{chain}"
    );
    let sbat: Vec<&str> = shim["authenticode"]["sbat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["component"].as_str().unwrap())
        .collect();
    assert!(sbat.contains(&"shim") && sbat.contains(&"sbat"), "{sbat:?}");

    // Debian's GRUB: the digest osslsigncode calculates, Debian's signer.
    let grub = at(1);
    assert_eq!(grub["authenticode"]["state"], "valid", "{grub:#}");
    let s = &sigs(grub)[0];
    assert_eq!(s["digest"], osslsigncode_digest(Path::new(SIGNED_GRUB)));
    assert_eq!(s["digest"], pesign_digest(Path::new(SIGNED_GRUB)));
    assert_eq!(s["digest"], s["signed_digest"]);
    assert_eq!(
        cn(s["signer"]["subject"].as_str().unwrap()),
        "Debian Secure Boot Signer 2022 - grub2"
    );
    assert_eq!(
        sbverify_issuers(Path::new(SIGNED_GRUB)),
        [cn(s["signer"]["issuer"].as_str().unwrap())]
    );

    // Signed here: valid, our key; pesign's digest.
    let ours = at(2);
    assert_eq!(ours["authenticode"]["state"], "valid", "{ours:#}");
    let s = &sigs(ours)[0];
    assert_eq!(s["signer"]["subject"], "CN=bootstick throw-away test key");
    assert_eq!(s["digest"], pesign_digest(&signed));

    // One byte flipped in its code: tampered, the recomputed digest is
    // pesign's and differs from the signed one.
    let bad = at(3);
    assert_eq!(bad["authenticode"]["state"], "tampered", "{bad:#}");
    let s = &sigs(bad)[0];
    assert_eq!(s["digest"], pesign_digest(&flipped));
    assert_ne!(s["digest"], s["signed_digest"]);
    assert_eq!(s["signed_digest"], sigs(ours)[0]["signed_digest"]);

    let none = at(4);
    assert_eq!(none["authenticode"]["state"], "unsigned", "{none:#}");
    assert!(sigs(none).is_empty());

    // The signature bytes changed, the image did not: its digest is the
    // signed one, and the signature does not verify.
    let forged = at(5);
    assert_eq!(
        forged["authenticode"]["state"], "bad-signature",
        "{forged:#}"
    );
    let s = &sigs(forged)[0];
    assert_eq!(s["digest"], s["signed_digest"]);
    assert_eq!(s["digest"], pesign_digest(&badsig));

    // `write` warns when the stick's loader cannot pass Secure Boot: an
    // ISO with only the unsigned GRUB as its El Torito loader, built as a
    // layout, gets the warning; one with shim does not.
    for (name, loader, warned) in [
        ("unsigned", &unsigned, true),
        ("shim", &PathBuf::from(SHIM), false),
    ] {
        let root = d.join(format!("root-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        efi_image(&root, "efi.img", loader);
        let iso = d.join(format!("{name}.iso"));
        common::run(
            Command::new("xorriso")
                .args([
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-R",
                    "-J",
                    "-e",
                    "efi.img",
                    "-no-emul-boot",
                    "-o",
                ])
                .arg(&iso)
                .arg(&root),
        );
        let stick = d.join(format!("{name}.img"));
        let out = common::bootstick()
            .args(["write", "--yes", "--json"])
            .arg(&iso)
            .arg(&stick)
            .output()
            .unwrap();
        let lines = common::json_lines(&out.stdout);
        assert!(out.status.success(), "{lines:#?}");
        let warning = lines.iter().any(|l| {
            l["event"] == "warning"
                && l["message"].as_str().is_some_and(|m| {
                    m.contains("can boot only with Secure Boot turned off")
                        && m.contains("/EFI/BOOT/BOOTX64.EFI is not signed")
                })
        });
        assert_eq!(warning, warned, "{name}: {lines:#?}");
    }

    // The words say it too.
    let text = common::run(common::bootstick().arg("inspect").arg(&iso));
    assert!(
        text.contains("el-torito #3 /EFI/BOOT/BOOTX64.EFI: TAMPERED"),
        "{text}"
    );
    assert!(
        text.contains("el-torito #4 /EFI/BOOT/BOOTX64.EFI: unsigned"),
        "{text}"
    );
}
