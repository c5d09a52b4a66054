package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// The shipped LeakwatchContainerLeaking rule is tested with promtool on
// series recorded from the real agent: deploy/prometheus/tests/recorded
// holds, per case, the agent's view of one container at every collection
// (<case>.csv: t, bytes, limit, which `leakwatch analyze` and the detector's
// tests replay, and leaking, confidence, growth as the agent reported them)
// and the promtool test generated from it (<case>_test.yaml).
// TestRecordAgentSeries re-records them when LEAKWATCH_RECORD=1 (about 35
// minutes, as root; LEAKWATCH_RECORD_ONLY=jvm-g1 limits it to some cases);
// TestPromtoolRecordedSeries runs promtool on them and checks that each test
// is the one its recording gives (LEAKWATCH_RECORD=regenerate rewrites the
// tests from the recordings, after a change of the rule).
const (
	recordedDir = "deploy/prometheus/tests/recorded"
	// recordInterval is the agent's --interval while recording: its default,
	// with the detector's default settings, as users run it.
	recordInterval = 10 * time.Second
	leakingAlert   = "LeakwatchContainerLeaking"
)

// recordedCase is a workload whose container the agent is recorded watching.
type recordedCase struct {
	name, about string
	limit       int64
	// record is how long the container is recorded from its start.
	record time.Duration
	start  func(t *testing.T, g *cgtest.Group, record time.Duration) *cgtest.Proc
}

func TestRecordAgentSeries(t *testing.T) {
	if os.Getenv("LEAKWATCH_RECORD") != "1" {
		t.Skip("set LEAKWATCH_RECORD=1 to re-record " + recordedDir + " from a real agent (about 35 minutes, as root)")
	}
	cgtest.RequirePrivileged(t)
	_, gowork := cgtest.Workloads(t)
	javaDir := buildJavaLeak(t)
	cases := []recordedCase{{
		name:   "go-steady-leak",
		about:  "a Go program (test/workloads/gowork) keeping 210 KiB more every 100 ms (2.15 MB/s) under a 5 GiB limit",
		limit:  5 << 30,
		record: 27 * time.Minute,
		start: func(t *testing.T, g *cgtest.Group, record time.Duration) *cgtest.Proc {
			p := g.Start(t, gowork)
			p.Repeat(t, "leak 210", 100*time.Millisecond, int(record/(100*time.Millisecond)))
			return p
		},
	}, {
		name: "jvm-g1",
		about: "a JVM (test/workloads/javaleak, G1, -Xmx2g) keeping 80 KiB more every 100 ms and dropping 256 KiB of garbage, " +
			"under a 3 GiB limit, until its heap runs out (it exits on OutOfMemoryError)",
		limit:  3 << 30,
		record: 32 * time.Minute,
		start: func(t *testing.T, g *cgtest.Group, _ time.Duration) *cgtest.Proc {
			return g.Start(t, "java", "-XX:+UseG1GC", "-Xms32m", "-Xmx2g", "-XX:+ExitOnOutOfMemoryError",
				"-XX:-UsePerfData", "-cp", javaDir, "Leak", "80", "256")
		},
	}}
	// LEAKWATCH_RECORD_ONLY=name,... re-records only those cases.
	if only := os.Getenv("LEAKWATCH_RECORD_ONLY"); only != "" {
		keep := strings.Split(only, ",")
		cases = slices.DeleteFunc(cases, func(c recordedCase) bool { return !slices.Contains(keep, c.name) })
	}

	agent := agenttest.Start(t, "--interval", recordInterval.String())
	groups := make([]*cgtest.Group, len(cases))
	rows := make([][]recordedRow, len(cases))
	labels := make([]string, len(cases))
	ended := make([]bool, len(cases))
	start := time.Now()
	var longest time.Duration
	for i, c := range cases {
		groups[i] = cgtest.New(t, c.limit)
		c.start(t, groups[i], c.record)
		longest = max(longest, c.record)
	}
	for time.Since(start) < longest {
		time.Sleep(time.Second)
		byCgroup := map[string]apiContainer{}
		for _, ct := range listContainers(t, agent.URL) {
			byCgroup[ct.Cgroup] = ct
		}
		for i, g := range groups {
			ct, ok := byCgroup[g.Rel]
			if !ok || ended[i] {
				continue
			}
			if ct.Gone || time.Since(start) >= cases[i].record {
				ended[i] = true // done, or the workload exited (a JVM out of heap)
				continue
			}
			r := recordedRow{T: ct.LastSeen, Bytes: ct.LeakSignalBytes, Limit: ct.LimitBytes,
				Leaking: ct.Leaking, Confidence: ct.Confidence, Growth: ct.GrowthBytesPerSecond}
			if n := len(rows[i]); n > 0 && !r.T.After(rows[i][n-1].T) {
				continue // the same collection
			}
			rows[i] = append(rows[i], r)
			labels[i] = fmt.Sprintf(`cgroup=%q,container=%q,container_id=%q,namespace=%q,pod=%q`,
				ct.Cgroup, ct.Container, ct.ContainerID, ct.Namespace, ct.Pod)
		}
	}
	for i, c := range cases {
		rec := recording{Name: c.name, About: c.about, Labels: labels[i], Rows: rows[i]}
		if len(rec.Rows) == 0 {
			t.Fatalf("%s: the agent never reported cgroup %s", c.name, groups[i].Rel)
		}
		writeRepoFile(t, rec.csv(), recordedDir, c.name+".csv")
		writeRepoFile(t, rec.promtoolTest(t), recordedDir, c.name+"_test.yaml")
		t.Logf("%s: %d collections recorded", c.name, len(rec.Rows))
	}
}

// TestPromtoolRecordedSeries runs promtool on the tests generated from the
// recordings, after checking that each is what its recording and the
// current rules give (so a change of the rule's `for` or annotations is
// tested against the recordings, not against a stale copy).
func TestPromtoolRecordedSeries(t *testing.T) {
	tool := promtool(t)
	csvs, err := filepath.Glob(repoPath(recordedDir, "*.csv"))
	if err != nil || len(csvs) == 0 {
		t.Fatalf("no recordings in %s (%v)", recordedDir, err)
	}
	for _, path := range csvs {
		name := strings.TrimSuffix(filepath.Base(path), ".csv")
		t.Run(name, func(t *testing.T) {
			rec := readRecording(t, path)
			want := rec.promtoolTest(t)
			testFile := filepath.Join(recordedDir, name+"_test.yaml")
			if !bytes.Equal(readFile(t, testFile), want) {
				if os.Getenv("LEAKWATCH_RECORD") != "" {
					writeRepoFile(t, want, testFile)
				} else {
					t.Fatalf("%s is not what %s and %s give; regenerate it with LEAKWATCH_RECORD=regenerate go test -run TestPromtoolRecordedSeries ./test/deploy",
						testFile, filepath.Join(recordedDir, name+".csv"), rulesFile)
				}
			}
			run(t, tool, "test", "rules", testFile)
		})
	}
}

// recordedRow is the agent's view of a container at one collection.
type recordedRow struct {
	T                  time.Time
	Bytes, Limit       uint64
	Leaking            bool
	Confidence, Growth float64
}

type recording struct {
	Name, About string
	// Labels are the container's labels on /metrics, as a PromQL label list.
	Labels string
	Rows   []recordedRow
}

const csvHeader = "t,bytes,limit,leaking,confidence,growth"

func (r recording) csv() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Recorded by TestRecordAgentSeries (test/deploy/recorded_test.go) from `leakwatch run --interval %v`:\n", recordInterval)
	fmt.Fprintf(&b, "# %s.\n", r.About)
	fmt.Fprintf(&b, "# labels: %s\n", r.Labels)
	fmt.Fprintln(&b, csvHeader)
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "%.9f,%d,%d,%d,%s,%s\n", float64(row.T.UnixNano())/1e9, row.Bytes, row.Limit, boolDigit(row.Leaking),
			strconv.FormatFloat(row.Confidence, 'g', -1, 64), strconv.FormatFloat(row.Growth, 'g', -1, 64))
	}
	return b.Bytes()
}

func readRecording(t *testing.T, path string) recording {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := recording{Name: strings.TrimSuffix(filepath.Base(path), ".csv")}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case line == 2:
			rec.About = strings.TrimSuffix(strings.TrimPrefix(text, "# "), ".")
			continue
		case strings.HasPrefix(text, "# labels: "):
			rec.Labels = strings.TrimPrefix(text, "# labels: ")
			continue
		case strings.HasPrefix(text, "#"), text == csvHeader:
			continue
		}
		f := strings.Split(text, ",")
		if len(f) != 6 {
			t.Fatalf("%s:%d: %d fields, want 6", path, line, len(f))
		}
		var row recordedRow
		secs, err1 := strconv.ParseFloat(f[0], 64)
		bytes, err2 := strconv.ParseUint(f[1], 10, 64)
		limit, err3 := strconv.ParseUint(f[2], 10, 64)
		conf, err4 := strconv.ParseFloat(f[4], 64)
		growth, err5 := strconv.ParseFloat(f[5], 64)
		if err := cmpErr(err1, err2, err3, err4, err5); err != nil || (f[3] != "0" && f[3] != "1") {
			t.Fatalf("%s:%d: %q: %v", path, line, text, err)
		}
		row.T = time.Unix(0, int64(math.Round(secs*1e9)))
		row.Bytes, row.Limit, row.Leaking, row.Confidence, row.Growth = bytes, limit, f[3] == "1", conf, growth
		rec.Rows = append(rec.Rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rec.Labels == "" || len(rec.Rows) == 0 {
		t.Fatalf("%s: no labels line or no rows", path)
	}
	return rec
}

// promtoolTest turns a recording into a promtool test of the leaking alert:
// the agent's gauges as Prometheus would scrape them, one sample per
// collection (placed every recordInterval: the agent collects on a ticker),
// the rule evaluated at each, and the alert expected firing from its `for`
// after the verdict's longest run turned on, not one evaluation earlier,
// and still at the end of that run.
func (r recording) promtoolTest(t *testing.T) []byte {
	t.Helper()
	rule := leakingRule(t)
	hold, err := time.ParseDuration(string(*rule.For))
	if err != nil {
		t.Fatalf("%s: for %q: %v", leakingAlert, *rule.For, err)
	}
	// The rule is evaluated at every collection, so that no sample of the
	// recording escapes it (with a one-minute evaluation, dips between the
	// minutes go unseen, as they would for a Prometheus that happens to
	// evaluate at other moments).
	const evalEvery = recordInterval
	step := func(i int) time.Duration { return time.Duration(i) * recordInterval }

	// The longest run of leaking collections.
	runStart, runLen := -1, 0
	for i := 0; i < len(r.Rows); {
		if !r.Rows[i].Leaking {
			i++
			continue
		}
		j := i
		for j < len(r.Rows) && r.Rows[j].Leaking {
			j++
		}
		if j-i > runLen {
			runStart, runLen = i, j-i
		}
		i = j
	}
	if runStart < 0 {
		t.Fatalf("%s: the agent never reported the container leaking", r.Name)
	}
	pendingAt := (step(runStart) + evalEvery - 1).Truncate(evalEvery)
	firesAt := pendingAt + hold
	lastLeaking := step(runStart + runLen - 1)
	for i := 1; i < len(r.Rows); i++ {
		if gap := r.Rows[i].T.Sub(r.Rows[i-1].T); gap > recordInterval*3/2 {
			t.Fatalf("%s: %v between collections %d and %d: the recording missed one, and its samples cannot be placed every %v",
				r.Name, gap, i-1, i, recordInterval)
		}
	}
	if firesAt > lastLeaking {
		t.Fatalf("%s: the verdict held %v (from %v), shorter than the alert's for of %v: the alert cannot fire",
			r.Name, step(runLen), step(runStart), hold)
	}

	const instance = "agent:9753"
	labels := r.Labels + `,instance="` + instance + `",job="leakwatch"`
	var leaking, conf, growth []string
	for _, row := range r.Rows {
		leaking = append(leaking, strconv.Itoa(boolDigit(row.Leaking)))
		conf = append(conf, strconv.FormatFloat(row.Confidence, 'g', -1, 64))
		growth = append(growth, strconv.FormatFloat(row.Growth, 'g', -1, 64))
	}
	lab := labelMap(t, labels)
	annotations := map[string]string{}
	for k, v := range rule.Annotations {
		annotations[k] = renderLabels(t, v, lab)
	}
	// An empty label is no label in Prometheus: the alert has none.
	maps.DeleteFunc(lab, func(_, v string) bool { return v == "" })
	for k, v := range rule.Labels {
		lab[k] = v
	}
	expLabels, _ := json.Marshal(lab)
	expAnnotations, _ := json.Marshal(annotations)

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by test/deploy/recorded_test.go from %s.csv; re-record with\n", r.Name)
	fmt.Fprintf(&b, "# LEAKWATCH_RECORD=1 go test -run TestRecordAgentSeries -timeout 50m ./test/deploy\n")
	fmt.Fprintf(&b, "# %s, watched by a real agent.\n", r.About)
	fmt.Fprintf(&b, "# The verdict turned on at %v and held for %v: %s goes pending at %v\n", step(runStart), step(runLen), leakingAlert, pendingAt)
	fmt.Fprintf(&b, "# and fires %v later.\n", hold)
	fmt.Fprintf(&b, "rule_files:\n  - ../../rules.yaml\nevaluation_interval: %s\ntests:\n", promDuration(evalEvery))
	fmt.Fprintf(&b, "  - interval: %s\n    input_series:\n", promDuration(recordInterval))
	for _, s := range []struct {
		metric string
		values []string
	}{
		{"leakwatch_container_leaking", leaking},
		{"leakwatch_container_leak_confidence", conf},
		{"leakwatch_container_memory_growth_bytes_per_second", growth},
	} {
		fmt.Fprintf(&b, "      - series: '%s{%s}'\n        values: '%s'\n", s.metric, labels, strings.Join(s.values, " "))
	}
	fmt.Fprintf(&b, "    alert_rule_test:\n")
	for _, at := range []struct {
		when   time.Duration
		firing bool
	}{{firesAt - evalEvery, false}, {firesAt, true}, {lastLeaking.Truncate(evalEvery), true}} {
		fmt.Fprintf(&b, "      - eval_time: %s\n        alertname: %s\n", promDuration(at.when), leakingAlert)
		if !at.firing {
			fmt.Fprintf(&b, "        exp_alerts: []\n")
			continue
		}
		fmt.Fprintf(&b, "        exp_alerts:\n          - exp_labels: %s\n            exp_annotations: %s\n", expLabels, expAnnotations)
	}
	return b.Bytes()
}

// leakingRule is the shipped LeakwatchContainerLeaking rule.
func leakingRule(t *testing.T) (rule struct {
	For         *string
	Labels      map[string]string
	Annotations map[string]string
}) {
	t.Helper()
	for _, g := range rulesSpec(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == leakingAlert {
				if r.For == nil {
					t.Fatalf("%s has no for", leakingAlert)
				}
				f := string(*r.For)
				rule.For, rule.Labels, rule.Annotations = &f, r.Labels, r.Annotations
				return rule
			}
		}
	}
	t.Fatalf("%s missing from %s", leakingAlert, rulesFile)
	return rule
}

var labelTemplate = regexp.MustCompile(`\{\{ \$labels\.([a-z_]+) \}\}`)

// renderLabels expands {{ $labels.x }} in an annotation, the only template
// the leaking alert's annotations use; anything else fails the test rather
// than be guessed.
func renderLabels(t *testing.T, s string, labels map[string]string) string {
	t.Helper()
	out := labelTemplate.ReplaceAllStringFunc(s, func(m string) string {
		return labels[labelTemplate.FindStringSubmatch(m)[1]]
	})
	if strings.Contains(out, "{{") {
		t.Fatalf("%s: annotation %q uses templates other than $labels; extend renderLabels", leakingAlert, s)
	}
	return out
}

var labelPair = regexp.MustCompile(`([a-z_]+)="((?:[^"\\]|\\.)*)"`)

func labelMap(t *testing.T, list string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range labelPair.FindAllStringSubmatch(list, -1) {
		v, err := strconv.Unquote(`"` + p[2] + `"`)
		if err != nil {
			t.Fatalf("label %s: %v", p[0], err)
		}
		m[p[1]] = v
	}
	return m
}

// promDuration writes d as promtool reads it (whole seconds).
func promDuration(d time.Duration) string { return strconv.Itoa(int(d/time.Second)) + "s" }

func boolDigit(b bool) int {
	if b {
		return 1
	}
	return 0
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func writeRepoFile(t *testing.T, data []byte, rel ...string) {
	t.Helper()
	path := repoPath(rel...)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// apiContainer is the part of /api/v1/containers the recording keeps.
type apiContainer struct {
	Cgroup               string    `json:"cgroup"`
	Container            string    `json:"container"`
	ContainerID          string    `json:"container_id"`
	Namespace            string    `json:"namespace"`
	Pod                  string    `json:"pod"`
	LeakSignalBytes      uint64    `json:"leak_signal_bytes"`
	LimitBytes           uint64    `json:"limit_bytes"`
	GrowthBytesPerSecond float64   `json:"growth_bytes_per_second"`
	Confidence           float64   `json:"confidence"`
	Leaking              bool      `json:"leaking"`
	Gone                 bool      `json:"gone"`
	LastSeen             time.Time `json:"last_seen"`
}

func listContainers(t *testing.T, base string) []apiContainer {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(base + "/api/v1/containers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []apiContainer
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decoding /api/v1/containers: %v", err)
	}
	return out
}

// buildJavaLeak compiles test/workloads/javaleak with javac into a temp dir.
func buildJavaLeak(t *testing.T) string {
	t.Helper()
	javac := requireTool(t, "javac", "install the Debian package openjdk-17-jdk-headless (hack/install-deps.sh does)")
	dir := t.TempDir()
	out, err := exec.Command(javac, "-d", dir, repoPath("test", "workloads", "javaleak", "Leak.java")).CombinedOutput()
	if err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	return dir
}
