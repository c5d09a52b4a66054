// Package debugfile finds the separate debug file of an ELF binary:
// distributions strip their binaries and ship the symbol tables and
// .debug_frame in -dbg/-dbgsym packages, under /usr/lib/debug, named by the
// binary's build id or by the name in its .gnu_debuglink section. The
// symbolizer reads a debug file's .symtab (names of the static functions a
// stripped binary's .dynsym lacks: glibc's sysmalloc, _int_malloc) and the
// unwinder its .debug_frame.
package debugfile

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Root is where debug packages put debug files.
const Root = "/usr/lib/debug"

// maxLinkBytes bounds the .gnu_debuglink section read: a file name, padding
// and a CRC.
const maxLinkBytes = 4096

// Link returns the file name that f's .gnu_debuglink section names, or "".
func Link(f *elf.File) string {
	s := f.Section(".gnu_debuglink")
	if s == nil || s.Type == elf.SHT_NOBITS || s.Size > maxLinkBytes {
		return ""
	}
	data, err := s.Data()
	if err != nil {
		return ""
	}
	i := bytes.IndexByte(data, 0)
	if i <= 0 {
		return ""
	}
	name := string(data[:i])
	// A name, not a path: a hostile binary must not point outside the
	// directories searched.
	if name != filepath.Base(name) || name == "." || name == ".." {
		return ""
	}
	return name
}

// Candidates lists where the debug file of the binary at path (as its
// process sees it) may be, in the order GDB searches: by build id under
// Root, then by link name beside the binary, in .debug/ beside it, and
// under Root in the binary's directory.
func Candidates(path, buildID, link string) []string {
	var out []string
	if len(buildID) > 2 {
		out = append(out, filepath.Join(Root, ".build-id", buildID[:2], buildID[2:]+".debug"))
	}
	if link != "" && filepath.IsAbs(path) {
		dir := filepath.Dir(path)
		for _, c := range []string{filepath.Join(dir, link), filepath.Join(dir, ".debug", link), filepath.Join(Root, dir, link)} {
			if c != filepath.Clean(path) { // never the binary itself
				out = append(out, c)
			}
		}
	}
	return out
}

// Open opens the first candidate that is a regular file in the filesystem
// at root ("" for the agent's own, "/proc/PID/root" for a process's), or
// returns nil. Symbolic links resolve inside root: a container cannot make
// the agent read a file of the host. The caller checks that the file is
// the binary's (its build id): a .gnu_debuglink name is only a name.
func Open(root, path, buildID, link string) *os.File {
	dir := -1
	if root != "" && root != "/" {
		d, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		defer func() { _ = unix.Close(d) }()
		dir = d
	}
	for _, c := range Candidates(path, buildID, link) {
		f := openIn(dir, c)
		if f == nil {
			continue
		}
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			return f
		}
		_ = f.Close()
	}
	return nil
}

func openIn(dir int, path string) *os.File {
	if dir < 0 {
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		return f
	}
	fd, err := unix.Openat2(dir, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), path)
}
