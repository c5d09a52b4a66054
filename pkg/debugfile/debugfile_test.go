package debugfile

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestCandidatesInGDBsOrder(t *testing.T) {
	got := Candidates("/usr/bin/redis-server", "abcdef01", "redis-server.debug")
	want := []string{
		"/usr/lib/debug/.build-id/ab/cdef01.debug",
		"/usr/bin/redis-server.debug",
		"/usr/bin/.debug/redis-server.debug",
		"/usr/lib/debug/usr/bin/redis-server.debug",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Candidates = %q, want %q", got, want)
	}
	// A link naming the binary itself is no debug file.
	if got := Candidates("/bin/x", "", "x"); !slices.Equal(got, []string{"/bin/.debug/x", "/usr/lib/debug/bin/x"}) {
		t.Errorf("self link: %q", got)
	}
	if got := Candidates("relative/x", "", "x.debug"); len(got) != 0 {
		t.Errorf("relative path: %q, want none", got)
	}
}

// A process's filesystem is the container's: a debug file that is a
// symbolic link must resolve inside it, never to a file of the host.
func TestOpenResolvesLinksInsideTheRoot(t *testing.T) {
	root := t.TempDir()
	host := filepath.Join(t.TempDir(), "secret.debug")
	if err := os.WriteFile(host, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// An absolute link to the host file, and one that climbs out.
	if err := os.Symlink(host, filepath.Join(dir, "a.debug")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../.."+host, filepath.Join(dir, "b.debug")); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"a.debug", "b.debug"} {
		if f := Open(root, "/app/prog", "", link); f != nil {
			b, _ := os.ReadFile(f.Name())
			f.Close()
			t.Errorf("%s: opened %s (%q) outside the root", link, f.Name(), b)
		}
	}
	// The same link inside the root is followed there.
	inRoot := filepath.Join(root, host)
	if err := os.MkdirAll(filepath.Dir(inRoot), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inRoot, []byte("inside"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := Open(root, "/app/prog", "", "a.debug")
	if f == nil {
		t.Fatal("a link resolving inside the root was not followed")
	}
	defer f.Close()
	b := make([]byte, 16)
	n, _ := f.Read(b)
	if string(b[:n]) != "inside" {
		t.Errorf("read %q, want the file inside the root", b[:n])
	}
}

// A .gnu_debuglink is read as a file name: a binary whose link holds a
// path must not steer the search elsewhere.
func TestLinkIsANameOnly(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{"prog.debug": "prog.debug", "../../etc/shadow": "", "/etc/shadow": "", "..": ""} {
		content := filepath.Join(dir, "link")
		if err := os.WriteFile(content, append([]byte(name), 0, 0, 0, 0, 0, 0, 0, 0), 0o600); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "bin")
		if out, err := exec.Command("objcopy", "--update-section", ".gnu_debuglink="+content, "/bin/true", bin).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v\n%s", err, out)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		if got := Link(f); got != want {
			t.Errorf("link %q read as %q, want %q", name, got, want)
		}
		f.Close()
	}
}
