// Package symbolize turns the user-space addresses of sampled stacks into
// functions, on the node, for native and Go programs, so that the profile
// builder can write pprof Locations, Functions and Mappings.
//
// A process is keyed by (pid, start time), as everywhere in leakwatch.
// [Symbolizer.Capture] records its executable mappings from /proc/PID/maps
// while it lives and loads the symbol tables of their files, so a process
// that has exited since can still be symbolized; [Symbolizer.Forget] drops
// it when its data expires. [Symbolizer.Symbolize] maps each address to its
// mapping, the mapping's file offset to the ELF file's own addresses (the
// PT_LOAD segment holding the offset gives the bias, which covers PIE,
// non-PIE and shared libraries alike), and that to frames:
//
//   - Go binaries (Go 1.18 and later) through their pclntab, read as the
//     runtime reads it: function, file, line, and for Go 1.20 and later the
//     inlined frames, innermost first, also in stripped binaries (where
//     the funcdata base is located by checking the candidate positions
//     against the inline trees). debug/gosym cannot expand inlining, so it
//     only serves Go 1.2 to 1.17 binaries, with the outermost function
//     name and no line. Of a Go binary's symbol tables only the functions
//     outside the pclntab's range are kept (cgo's C code, linked in by
//     the external linker): none, for a binary without cgo.
//   - Other ELF files through .symtab and .dynsym: the function name only
//     (no DWARF lines; the mapping's build id lets pprof or debuginfod add
//     them). The tables are read in place, not through debug/elf, into 16
//     bytes a function (address, size, name offset); names stay in the
//     file's string tables, mapped, and are copied out and demangled only
//     when a lookup returns them. C++ and Rust names are demangled without
//     parameter and template lists, as pprof does by default; the mangled
//     name is Frame.SystemName. A symbol without a size is not used, so an
//     address in a gap of a stripped file stays unknown.
//   - JIT code through the process's perf map, /tmp/perf-<pid in its
//     namespace>.map inside the process's root, reread when it changes.
//
// Every address after the first is a return address: it is looked up one
// byte earlier, in the call instruction, and reported as given. An address
// that resolves to nothing keeps its mapping (or none) and no frames.
//
// Files are read through /proc/PID/root, so paths inside containers
// resolve. A file is used only if its inode is the one in maps; otherwise
// (deleted, or replaced at the same path) it is read through
// /proc/PID/map_files while the process lives, which needs CAP_SYS_ADMIN
// or CAP_CHECKPOINT_RESTORE. Symbol tables are cached by build id (the GNU
// build id, else the Go build id), else by device, inode, size and mtime,
// so a thousand processes of one image cost one table. Both caches are LRU:
// Config.MaxProcesses captured maps (default 4096), and Config.MaxFiles
// tables (default 64) holding at most Config.MaxTableBytes of heap
// (default 16 MiB; a table larger than that alone is kept alone). The
// bytes bound counts what a table allocates (Stats.TableBytes), not the
// file data it maps, a Go pclntab, a string table, or the executable
// segments of a native file, whose code [Symbolizer.SkippedCaller] decodes
// to tell whether a stack's leaf-return hint is its skipped caller
// (Stats.MappedBytes):
// that is page cache, shared with the processes that run the file, and
// counts in the agent's RSS only as the file pages that loads and lookups
// touched (RssFile), which the kernel can drop at any time. A table
// evicted while a process is still alive is reloaded from its file, but
// one evicted after its last process exited leaves that process's
// addresses unsymbolized (Stats.Unsymbolized). The files held open from
// capture until their table first loads are an LRU too, of MaxHeldFiles:
// the only descriptors of the agent that grow with what the node runs.
//
// Captured maps change with exec: call Capture again after one. Stacks
// sampled before the exec are then symbolized with the new image's map.
package symbolize
