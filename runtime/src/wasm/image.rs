//! Compiled code held once for every engine: a sealed in-memory file (a
//! Linux memfd) that each engine maps instead of loading its own copy, so
//! the kernel shares the code's pages between engines. Each mapping keeps
//! a descriptor open for as long as the engine holds the code.

use super::prepare::Code;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Code this large or larger is shared between engines; smaller code is
/// copied into each (a copy costs less than the descriptor a mapping holds
/// per engine, and the node's descriptors serve its connections).
pub const SHARE_FROM_BYTES: usize = 8 << 20;

/// Serialized code in a sealed memfd.
pub struct Image {
    file: File,
    component: bool,
}

impl Image {
    /// `code` (serialized by this wasmtime: a component where `component`,
    /// else a module) in a new memfd, sealed against any change.
    ///
    /// # Safety
    ///
    /// `code` must be safe to load as for wasmtime's `deserialize`: code
    /// this wasmtime compiled, or that the caller vouches for as such.
    /// Engines load the image without checking it further than wasmtime's
    /// header check.
    pub unsafe fn new(code: &[u8], component: bool) -> std::io::Result<Self> {
        // SAFETY: a plain syscall on a NUL-terminated name; the descriptor
        // it returns is owned by the `File` from here on.
        let file = unsafe {
            let fd = libc::memfd_create(
                c"wasmnode-code".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            File::from_raw_fd(fd)
        };
        (&file).write_all(code)?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on a descriptor this function owns.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let image = Self { file, component };
        // Engines open the file by its path under /proc: where that is not
        // mounted, say so now rather than as code that does not load.
        File::open(image.path())?;
        Ok(image)
    }

    /// Where engines open the file (wasmtime maps a component by path).
    fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }

    /// The code mapped into `engine` from the shared file.
    pub fn load(&self, engine: &Engine) -> wasmtime::Result<Code> {
        let path = self.path();
        // SAFETY: the file holds code safe to load (the contract of `new`),
        // and its seals forbid any change to it for as long as it exists;
        // wasmtime checks its header against `engine` again.
        unsafe {
            if self.component {
                Component::deserialize_file(engine, &path).map(Code::Component)
            } else {
                Module::deserialize_file(engine, &path).map(Code::Module)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const ANSWER: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;

    fn image() -> Image {
        let code = Module::new(&Engine::default(), ANSWER)
            .unwrap()
            .serialize()
            .unwrap();
        // SAFETY: compiled by this wasmtime just now.
        unsafe { Image::new(&code, false) }.unwrap()
    }

    fn answer(code: &Code) -> i32 {
        let Code::Module(module) = code else {
            panic!("a module was loaded as a component");
        };
        let mut store = wasmtime::Store::new(module.engine(), ());
        let instance = wasmtime::Instance::new(&mut store, module, &[]).unwrap();
        let answer = instance
            .get_typed_func::<(), i32>(&mut store, "answer")
            .unwrap();
        answer.call(&mut store, ()).unwrap()
    }

    /// The `/proc/self/smaps` entries of the mappings of file `inode`: the
    /// permissions and the kB of each field, per mapping.
    fn mappings_of(inode: u64) -> Vec<(String, std::collections::HashMap<String, u64>)> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut found = Vec::new();
        let mut current: Option<(String, std::collections::HashMap<String, u64>)> = None;
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .first()
                .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
            {
                found.extend(current.take());
                if fields.get(4).and_then(|i| i.parse::<u64>().ok()) == Some(inode) {
                    current = Some((fields[1].to_string(), Default::default()));
                }
            } else if let Some((_, sizes)) = &mut current
                && let [name, kb, "kB"] = fields[..]
            {
                sizes.insert(name.trim_end_matches(':').to_string(), kb.parse().unwrap());
            }
        }
        found.extend(current);
        found
    }

    #[test]
    fn code_mapped_from_one_image_runs_in_two_engines_without_a_copy() {
        let image = image();
        let inode = image.file.metadata().unwrap().ino();
        let (first, second) = (Engine::default(), Engine::default());
        let (a, b) = (image.load(&first).unwrap(), image.load(&second).unwrap());
        assert_eq!((answer(&a), answer(&b)), (42, 42));
        let mappings = mappings_of(inode);
        let executable = mappings.iter().filter(|(perms, _)| perms == "r-xp");
        assert_eq!(
            executable.count(),
            2,
            "each engine maps the image: {mappings:?}"
        );
        for (perms, sizes) in &mappings {
            assert_eq!(
                (sizes["Private_Dirty"], sizes["Anonymous"]),
                (0, 0),
                "no page of the code was copied ({perms})"
            );
        }
    }

    #[test]
    fn an_image_cannot_be_changed_once_made() {
        let image = image();
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(image.path())
            .unwrap();
        assert!(writer.write_all(b"\xcc").is_err(), "written");
        assert!(writer.set_len(1).is_err(), "shrunk");
        assert_eq!(answer(&image.load(&Engine::default()).unwrap()), 42);
    }
}
