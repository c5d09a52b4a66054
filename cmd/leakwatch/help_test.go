package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// helpFlag is one flag as `leakwatch COMMAND --help` prints it.
type helpFlag struct {
	name, def, line string
}

var helpDefault = regexp.MustCompile(`\(default ([^):][^)]*)\)\s*$`)

// helpFlags runs `leakwatch COMMAND --help` and reads its flags: name (as
// written: -o, --listen) and printed default.
func helpFlags(t *testing.T, command string) map[string]helpFlag {
	t.Helper()
	code, _, stderr := runCLI(t, command, "--help")
	if code != exitOK {
		t.Fatalf("%s --help: exit %d\n%s", command, code, stderr)
	}
	flags := map[string]helpFlag{}
	lines := strings.Split(stderr, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "  -") || i+1 >= len(lines) {
			continue
		}
		usage := lines[i+1]
		if n := strings.Count(usage, "(default"); n > 1 {
			t.Errorf("%s --help prints the default %d times: %s", command, n, strings.TrimSpace(usage))
		}
		f := helpFlag{name: strings.Fields(l)[0], line: strings.TrimSpace(l) + " " + strings.TrimSpace(usage)}
		if m := helpDefault.FindStringSubmatch(usage); m != nil {
			f.def = m[1]
		}
		flags[f.name] = f
	}
	if len(flags) == 0 {
		t.Fatalf("%s --help lists no flags:\n%s", command, stderr)
	}
	return flags
}

// readmeLines returns README.md's lines.
func readmeLines(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

var backticked = regexp.MustCompile("`([^`]*)`")

// Every flag of `leakwatch run --help` is in the README's flag table with
// the same default, and the table lists no flag that does not exist.
func TestRunHelpMatchesTheReadme(t *testing.T) {
	help := helpFlags(t, "run")
	readme := map[string]string{} // flag -> default cell part ("" when prose)
	inTable := false
	for _, l := range readmeLines(t) {
		if strings.Contains(l, "`leakwatch run` flags") {
			inTable = true
			continue
		}
		if !inTable {
			continue
		}
		if !strings.HasPrefix(l, "|") {
			if len(readme) > 0 {
				break // the table ended
			}
			continue
		}
		cells := strings.Split(l, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "`--") {
			continue
		}
		var names []string
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			names = append(names, m[1])
		}
		defs := strings.Split(strings.TrimSpace(cells[2]), ", ")
		for i, n := range names {
			def := strings.TrimSpace(cells[2])
			if len(defs) == len(names) {
				def = defs[i]
			}
			readme[n] = def
		}
	}
	for name, f := range help {
		def, ok := readme[name]
		if !ok {
			t.Errorf("%s is missing from the README's flag table (help: %s)", name, f.line)
			continue
		}
		switch {
		case def == "none" || def == "off":
			if f.def != "" {
				t.Errorf("%s: the README says %s, --help says the default is %s", name, def, f.def)
			}
		case backticked.MatchString(def):
			if want := backticked.FindStringSubmatch(def)[1]; f.def != want {
				t.Errorf("%s: the README's default is %s, --help says %q", name, want, f.def)
			}
		}
	}
	for name := range readme {
		if _, ok := help[name]; !ok {
			t.Errorf("the README's flag table lists %s, which `leakwatch run` does not have", name)
		}
	}
}

// The README's command table writes each flag of every command but run
// (which has its own table) as its --help does (-o FILE, not --o), and a
// one-letter flag has no variable.
func TestCommandHelpMatchesTheReadme(t *testing.T) {
	lines := readmeLines(t)
	for _, c := range commands {
		if c.name == "run" || c.name == "version" {
			continue
		}
		var rows strings.Builder
		for _, l := range lines {
			shared := strings.Contains(l, "(`top` and `profile` also take") && (c.name == "top" || c.name == "profile")
			if strings.HasPrefix(l, "| `leakwatch "+c.name) || shared {
				rows.WriteString(l + "\n")
			}
		}
		if rows.Len() == 0 {
			t.Errorf("the README's command table has no row for %s", c.name)
			continue
		}
		for name, f := range helpFlags(t, c.name) {
			if len(name) == 2 && strings.Contains(f.line, "LEAKWATCH_") {
				t.Errorf("%s --help: one-letter flag %s has a variable: %s", c.name, name, f.line)
			}
			if !regexp.MustCompile(`(^|[^-\w])` + regexp.QuoteMeta(name) + `\b`).MatchString(rows.String()) {
				t.Errorf("%s --help has %s, which the README's command table does not mention as such:\n%s", c.name, name, rows.String())
			}
			if strings.Contains(f.def, `"`) || f.def != strings.ToLower(f.def) && !strings.Contains(f.def, "/") {
				t.Errorf("%s --help: default %s of %s is not written as it is typed", c.name, f.def, name)
			}
		}
	}
}

// top's columns start at the same place whatever the values, so that a
// refresh does not shift them.
func TestTopColumnsStayPut(t *testing.T) {
	ttl := func(f float64) *float64 { return &f }
	small := []apiContainer{{ID: "7", Cgroup: "/a", Memory: 512, Confidence: 0}}
	large := []apiContainer{
		{ID: "123456", Namespace: "kube-system", Pod: "coredns-5d78c9869d-abcde", Container: "coredns",
			Memory: 15 << 30, Limit: 16 << 30, Growth: -1.5 * (1 << 30), Confidence: 0.97, Leaking: true,
			TimeToLimit: ttl(1e12), OOMKills: 12},
		{ID: "9", Cgroup: "/gone", OOMKills: 1, Gone: true, WasLeaking: true},
		{ID: "8", Cgroup: "/system.slice/x.service", Memory: 3 << 20, Limit: 1 << 30, Growth: 1 << 20, Confidence: 1,
			TimeToLimit: ttl(3599), Leaking: true},
	}
	// The rune offset at which the last column (the name) starts.
	nameAt := func(out string) []int {
		var at []int
		for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			i := strings.LastIndex(l, "  ")
			at = append(at, utf8.RuneCountInString(l[:i+2]))
		}
		return at
	}
	var a, b strings.Builder
	printTop(&a, small, 30)
	printTop(&b, large, 30)
	want := nameAt(a.String())[0]
	for _, out := range []string{a.String(), b.String()} {
		for i, at := range nameAt(out) {
			if at != want {
				t.Errorf("line %d starts its last column at %d, the header at %d:\n%s%s", i, at, want, a.String(), b.String())
			}
		}
	}
	if !strings.Contains(b.String(), ">99h") {
		t.Errorf("a time to limit of 1e12 s is not shown as >99h:\n%s", b.String())
	}
}
