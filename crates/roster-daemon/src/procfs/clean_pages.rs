//! Where this process maps files private and read-only (its executable's
//! code and constants, the shared libraries'): pages that start-up code
//! left resident and an idle daemon can drop (see `roster_core::trim`).
//! Dropping a clean page of such a mapping is what the kernel's reclaim
//! does under memory pressure anyway; the next access reads it back.

use std::ops::Range;

/// The file a mapping shows: device (major, minor) and inode; inode 0 is
/// no file (the heap, stacks, `[vdso]`, `[vvar]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    major: u64,
    minor: u64,
    inode: u64,
}

/// The address ranges of this process that map a file private and
/// read-only and hold no page written since (relocations make the RELRO
/// part of a binary anonymous; it is left alone).
pub fn clean_file_ranges() -> std::io::Result<Vec<Range<usize>>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    Ok(clean_ranges(&smaps))
}

/// The read-only, unwritten mappings of files in an smaps text.
fn clean_ranges(smaps: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    // The mapping being read, while it is still a candidate.
    let mut current: Option<Range<usize>> = None;
    for line in smaps.lines() {
        if let Some(mapping) = mapping_header(line) {
            if let Some(range) = current.take() {
                ranges.push(range);
            }
            let (range, perms, file) = mapping;
            // Private, not writable; readable (r-xp or r--p).
            let read_only = perms.len() == 4
                && perms.starts_with('r')
                && perms.as_bytes()[1] == b'-'
                && perms.ends_with('p');
            if read_only && file.inode != 0 {
                current = Some(range);
            }
            continue;
        }
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            // Written pages: dropping them would lose what was written.
            let written = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .map_or(true, |kib| kib > 0);
            if written {
                current = None;
            }
        }
    }
    if let Some(range) = current {
        ranges.push(range);
    }
    ranges
}

/// `START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]`, as smaps heads a
/// mapping; other lines (`Rss:    4 kB`) are not headers.
fn mapping_header(line: &str) -> Option<(Range<usize>, &str, FileId)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let range = usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode = fields.next()?.parse().ok()?;
    let id = FileId {
        major: u64::from_str_radix(major, 16).ok()?,
        minor: u64::from_str_radix(minor, 16).ok()?,
        inode,
    };
    (range.start < range.end).then_some((range, perms, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
558ae3035000-558ae3205000 r--p 00000000 fe:00 5456796                    /usr/local/bin/roster
Size:               1856 kB
Rss:                1268 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
558ae3205000-558ae3998000 r-xp 001cf000 fe:00 5456796                    /usr/local/bin/roster
Size:               7756 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw sd
558ae3998000-558ae39db000 r--p 00961000 fe:00 5456796                    /usr/local/bin/roster
Size:                268 kB
Anonymous:           268 kB
VmFlags: rd mr mw me dw ac sd
558ae39db000-558ae39e1000 rw-p 009a3000 fe:00 5456796                    /usr/local/bin/roster
Anonymous:            24 kB
558ae4000000-558ae4100000 rw-p 00000000 00:00 0                          [heap]
Anonymous:          1056 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 777                        /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00004000 r--p 00000000 00:00 0                          [vvar]
Anonymous:             0 kB
7ffd00004000-7ffd00006000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
";

    #[test]
    fn code_and_constants_of_files_but_not_relro_data_heap_or_vvar() {
        assert_eq!(
            clean_ranges(SMAPS),
            [
                0x558ae3035000..0x558ae3205000,
                0x558ae3205000..0x558ae3998000,
                0x7f0000000000..0x7f0000100000,
            ]
        );
    }

    #[test]
    fn an_unreadable_anonymous_count_excludes_a_mapping_and_garbage_is_skipped() {
        let text = "garbage line\n10-20 r-xp 0 fe:00 5456796 /x\nAnonymous: lots\n30-40 r-xp 0 fe:00 5456796 /x\n";
        assert_eq!(
            clean_ranges(text),
            vec![Range {
                start: 0x30,
                end: 0x40
            }]
        );
    }
}
