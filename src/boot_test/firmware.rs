//! Finding QEMU and the firmware files each [`Firmware`] boots with.
//!
//! SeaBIOS is QEMU's built-in PC firmware (nothing to find). OVMF comes
//! from Debian's `ovmf` package: the 4 MiB build (`OVMF_CODE_4M.fd` with a
//! private copy of `OVMF_VARS_4M.fd` per boot, as the guest writes its
//! variables), and for Secure Boot the `.ms` pair: Secure Boot enforced
//! with Microsoft's keys enrolled, what a PC sold with Windows has.

use super::{Error, Firmware};
use std::path::{Path, PathBuf};

/// The QEMU binary every boot uses.
pub const QEMU: &str = "qemu-system-x86_64";

/// The Debian package that provides [`QEMU`].
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// The Debian package that provides OVMF.
pub const OVMF_PACKAGE: &str = "ovmf";

/// An OVMF pair: read-only code, and the variable store template copied
/// for each boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OvmfFiles {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Where to look, in order (Debian first; Fedora and Arch for the plain
/// build).
fn candidates(firmware: Firmware) -> &'static [(&'static str, &'static str)] {
    match firmware {
        Firmware::Bios => &[],
        Firmware::Uefi => &[
            (
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                "/usr/share/OVMF/OVMF_VARS_4M.fd",
            ),
            (
                "/usr/share/OVMF/OVMF_CODE.fd",
                "/usr/share/OVMF/OVMF_VARS.fd",
            ),
            (
                "/usr/share/edk2/ovmf/OVMF_CODE.fd",
                "/usr/share/edk2/ovmf/OVMF_VARS.fd",
            ),
            (
                "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
                "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
            ),
        ],
        Firmware::UefiSecureBoot => &[
            (
                "/usr/share/OVMF/OVMF_CODE_4M.ms.fd",
                "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
            ),
            (
                "/usr/share/OVMF/OVMF_CODE.ms.fd",
                "/usr/share/OVMF/OVMF_VARS.ms.fd",
            ),
        ],
    }
}

/// The OVMF files for `firmware` (`None` for BIOS, which needs none):
/// `given` when set (both must exist), else the first installed pair.
pub fn ovmf(firmware: Firmware, given: Option<&OvmfFiles>) -> Result<Option<OvmfFiles>, Error> {
    if firmware == Firmware::Bios {
        return Ok(None);
    }
    let looked: Vec<PathBuf> = match given {
        Some(g) => vec![g.code.clone(), g.vars.clone()],
        None => candidates(firmware)
            .iter()
            .map(|(c, _)| PathBuf::from(c))
            .collect(),
    };
    let found = match given {
        Some(g) => (g.code.is_file() && g.vars.is_file()).then(|| g.clone()),
        None => candidates(firmware)
            .iter()
            .map(|(c, v)| (Path::new(c), Path::new(v)))
            .find(|(c, v)| c.is_file() && v.is_file())
            .map(|(c, v)| OvmfFiles {
                code: c.to_owned(),
                vars: v.to_owned(),
            }),
    };
    found.map(Some).ok_or(Error::FirmwareMissing {
        firmware,
        package: OVMF_PACKAGE,
        looked,
    })
}

/// The QEMU binary: [`QEMU`] found on `PATH`.
pub fn qemu() -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(QEMU))
        .find(|p| is_executable(p))
        .ok_or(Error::QemuMissing {
            program: QEMU,
            package: QEMU_PACKAGE,
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bios_needs_no_files_and_given_files_must_exist() {
        assert_eq!(ovmf(Firmware::Bios, None).unwrap(), None);
        let missing = OvmfFiles {
            code: "/nonexistent/CODE.fd".into(),
            vars: "/nonexistent/VARS.fd".into(),
        };
        match ovmf(Firmware::Uefi, Some(&missing)) {
            Err(Error::FirmwareMissing {
                firmware: Firmware::Uefi,
                package: "ovmf",
                looked,
            }) => assert_eq!(looked, vec![missing.code, missing.vars]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secure_boot_never_falls_back_to_the_plain_build() {
        for (code, vars) in candidates(Firmware::UefiSecureBoot) {
            assert!(code.contains(".ms.") && vars.contains(".ms."), "{code}");
        }
    }
}
