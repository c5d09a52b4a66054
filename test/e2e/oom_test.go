package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

type oomRecord struct {
	Seq           uint64   `json:"seq"`
	Cgroup        string   `json:"cgroup"`
	PID           int      `json:"pid"`
	Trigger       string   `json:"trigger"`
	TriggerCgroup string   `json:"trigger_cgroup"`
	TopStacks     []string `json:"top_stacks"`
	ProfileURL    string   `json:"profile_url"`
}

// oomRecords lists /api/v1/oomkills by victim pid.
func (a *agent) oomRecords(t *testing.T) map[int]oomRecord {
	t.Helper()
	resp, err := http.Get(a.url + "/api/v1/oomkills")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var kills []oomRecord
	if err := json.NewDecoder(resp.Body).Decode(&kills); err != nil {
		t.Fatalf("decoding /api/v1/oomkills: %v", err)
	}
	out := make(map[int]oomRecord, len(kills))
	for _, k := range kills {
		out[k.PID] = k
	}
	return out
}

// runToOOM starts memwork in g, calls ready (if any) once it runs, has it
// touch memory until the kernel kills it, and returns its pid.
func runToOOM(t *testing.T, g *cgtest.Group, memwork string, ready func()) int {
	t.Helper()
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	if ready != nil {
		ready()
	}
	p.Send(t, "oom")
	if st := p.Wait(t, 60*time.Second); st.Success() {
		t.Fatalf("memwork in %s exited cleanly, want OOM-killed", g.Rel)
	}
	// A victim's memory is freed after it is reaped, as its mm goes:
	// later if anything (a /proc read) still holds the mm. The next
	// process must not start in a cgroup still charged with it, or it is
	// killed at its first page (seen: 8 ms after the previous kill, with
	// 31 MB still charged).
	deadline := time.Now().Add(10 * time.Second)
	for g.Anon(t) > 8*mib {
		if time.Now().After(deadline) {
			t.Fatalf("%s still holds %d MiB of anonymous memory 10 s after its OOM-killed process was reaped", g.Rel, g.Anon(t)/mib)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p.PID
}

// profileOf downloads a retained OOM profile and returns its total bytes
// and the pids its samples carry.
func profileOf(t *testing.T, url string) (int64, map[int64]bool) {
	t.Helper()
	total, pids, _ := profileSamples(t, url)
	return total, pids
}

// profileSamples is profileOf, and one line per sample (bytes, labels,
// innermost frames) to show what a total is made of.
func profileSamples(t *testing.T, url string) (int64, map[int64]bool, []string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	var total int64
	pids := map[int64]bool{}
	var lines []string
	for _, s := range p.Sample {
		v := s.Value[len(s.Value)-1]
		total += v
		for _, pid := range s.NumLabel["pid"] {
			pids[pid] = true
		}
		var frames []string
		for _, l := range s.Location {
			for _, ln := range l.Line {
				if ln.Function != nil && len(frames) < 4 {
					frames = append(frames, ln.Function.Name)
				}
			}
		}
		lines = append(lines, fmt.Sprintf("%9d %v %v %s", v, s.Label, s.NumLabel, strings.Join(frames, " < ")))
	}
	return total, pids, lines
}

// Every OOM kill counts in its container, the last process's included, as
// many as the kernel counts, in the API and in the counter the shipped
// alert reads; each kill's record names the container's own limit and
// holds that victim's growth only, within the limit, its stacks named.
func TestOOMKillsCountAndRecordEachVictim(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")
	const kills, limit = 20, 64 * mib
	g := cgtest.New(t, limit)

	// The first kill waits for the agent to track the cgroup: one made and
	// killed between two scans has no series to count in.
	pids := []int{runToOOM(t, g, memwork, func() { a.waitTracked(t, g.Rel) })}
	for len(pids) < kills {
		pids = append(pids, runToOOM(t, g, memwork, nil))
	}
	kernel, err := g.OOMKills()
	if err != nil {
		t.Fatal(err)
	}
	if kernel != kills {
		t.Fatalf("the kernel counted %d OOM kills in %s, want %d", kernel, g.Rel, kills)
	}

	// The cgroup is empty now: only the count can tell of the kills.
	var counted, metric float64
	var recs map[int]oomRecord
	deadline := time.Now().Add(20 * time.Second)
	for {
		counted = float64(a.containers(t)[g.Rel].OOMKills)
		metric = a.metricSum(t, "leakwatch_container_oom_kills_total", fmt.Sprintf("cgroup=%q", g.Rel))
		recs = a.oomRecords(t)
		all := true
		for _, pid := range pids {
			_, ok := recs[pid]
			all = all && ok
		}
		if (counted == kills && metric == kills && all) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if counted != kills || metric != kills {
		t.Errorf("oom_kills %v in the API, leakwatch_container_oom_kills_total %v; the kernel counted %d", counted, metric, kernel)
	}

	for i, pid := range pids {
		k, ok := recs[pid]
		if !ok {
			t.Errorf("kill %d (pid %d): no record", i+1, pid)
			continue
		}
		if k.Cgroup != g.Rel || k.Trigger != "container" || k.TriggerCgroup != g.Rel {
			t.Errorf("kill %d (pid %d) in %q: trigger %q (%q), want container %s", i+1, pid, k.Cgroup, k.Trigger, k.TriggerCgroup, g.Rel)
		}
		if len(k.TopStacks) == 0 || !strings.Contains(k.TopStacks[0], "oom_forever") {
			t.Errorf("kill %d (pid %d): top stacks %q, want the growth through oom_forever first", i+1, pid, k.TopStacks)
		}
		for _, s := range k.TopStacks {
			if strings.Contains(s, " 0x") || strings.Contains(s, "< 0x") {
				t.Errorf("kill %d (pid %d): unnamed frame in top stack %q", i+1, pid, s)
			}
		}
		if k.ProfileURL == "" {
			t.Errorf("kill %d (pid %d): no retained profile", i+1, pid)
			continue
		}
		// inuse is exact for memwork's 1 MiB mappings, the one being
		// touched at the kill included, plus its heap and its three small
		// start-up mappings, each counted as 512 KiB when sampled (not
		// the shell's that exec'd it: those went with the exec); faults
		// are sampled every 512 KiB (about ±20%).
		for _, c := range []struct {
			query string
			max   int64
		}{{"", limit + 2*mib}, {"?type=faults", limit * 5 / 4}} {
			total, got, samples := profileSamples(t, a.url+k.ProfileURL+c.query)
			if total > c.max || total < limit/4 {
				t.Errorf("kill %d (pid %d): profile%s totals %.1f MiB in a %d MiB cgroup, want at most %.1f MiB; its samples:\n%s",
					i+1, pid, c.query, float64(total)/mib, limit/mib, float64(c.max)/mib, strings.Join(samples, "\n"))
			}
			if len(got) != 1 || !got[int64(pid)] {
				t.Errorf("kill %d (pid %d): profile%s holds pids %v, want only the victim's", i+1, pid, c.query, got)
			}
		}
	}
}

// A kill at a parent's lower limit names the parent.
func TestOOMKillAtAncestorsLimit(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")
	parent := cgtest.New(t, 64*mib)
	child := parent.Child(t, 256*mib)
	pid := runToOOM(t, child, memwork, func() { a.waitTracked(t, child.Rel) })
	var k oomRecord
	deadline := time.Now().Add(20 * time.Second)
	for ok := false; !ok; {
		if k, ok = a.oomRecords(t)[pid]; !ok && time.Now().After(deadline) {
			t.Fatalf("no record of the kill of pid %d within 20s", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if k.Cgroup != child.Rel || k.Trigger != "ancestor" || k.TriggerCgroup != parent.Rel {
		t.Errorf("kill in %q: trigger %q (%q), want ancestor %s", k.Cgroup, k.Trigger, k.TriggerCgroup, parent.Rel)
	}
}

// Debian's redis-server (jemalloc, no frame pointers, stripped libc) filled
// to its limit: the record names the container's limit, lists the victim's
// stacks without bare addresses (an unnamed frame as file+offset, none of
// the words a frame-pointer walk read past the stack), within what the
// cgroup held, and its profiles hold redis alone.
func TestOOMKillRecordOfRedis(t *testing.T) {
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v (hack/install-deps.sh installs it)", err)
	}
	a := startAgent(t, "--interval", "1s")
	const limit = 128 * mib
	g := cgtest.New(t, limit)
	p, conn := startRedis(t, g, redis)
	a.waitTracked(t, g.Rel)
	// About 1.5 GB of values, far past the limit.
	if _, err := fmt.Fprintf(conn, "DEBUG POPULATE 3000000 key 512\r\n"); err != nil {
		t.Fatal(err)
	}
	st := p.Wait(t, 60*time.Second)
	if st.Success() {
		t.Fatal("redis-server exited cleanly, want OOM-killed")
	}
	// The kernel's own count of the victim's faults (the shell that
	// exec'd it included: some hundred more), which the faults view
	// samples.
	ru, ok := st.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("no rusage for pid %d", p.PID)
	}
	faulted := float64(ru.Minflt+ru.Majflt) * float64(os.Getpagesize())
	t.Logf("the kernel counted %d faults of the victim: %.1f MiB", ru.Minflt+ru.Majflt, faulted/mib)

	k := a.waitOOMRecord(t, p.PID, "redis-server")
	t.Logf("record: trigger %s, top stacks:\n%s", k.Trigger, strings.Join(k.TopStacks, "\n"))
	if k.Trigger != "container" || k.TriggerCgroup != g.Rel {
		t.Errorf("trigger %q (%q), want container %s", k.Trigger, k.TriggerCgroup, g.Rel)
	}
	if len(k.TopStacks) == 0 {
		t.Error("no top stacks")
	}
	for _, s := range k.TopStacks {
		if strings.Contains(s, " 0x") {
			t.Errorf("unnamed frame in top stack %q", s)
		}
	}
	if k.ProfileURL == "" {
		t.Fatal("no retained profile")
	}
	// jemalloc maps more than it touches (the inuse view, mapped bytes, is
	// above the limit); the top stacks are the faults view's (see below:
	// faults, not pages held), their five largest within the limit and a
	// quarter.
	var top float64
	for _, s := range k.TopStacks {
		var mb float64
		if _, err := fmt.Sscanf(s, "%fMiB", &mb); err != nil {
			t.Fatalf("top stack %q: %v", s, err)
		}
		top += mb
	}
	if top > limit*5/4/mib {
		t.Errorf("top stacks total %.1f MiB in a %d MiB cgroup", top, limit/mib)
	}
	_, _, out := pprofTop(t, a.url+k.ProfileURL, "inuse_space")
	t.Logf("retained inuse profile:\n%s", out)
	for _, query := range []string{"", "?type=faults"} {
		total, got := profileOf(t, a.url+k.ProfileURL+query)
		t.Logf("profile%s: %.1f MiB, pids %v", query, float64(total)/mib, got)
		// The faults view counts faults, not pages held: a read of
		// memory never written maps the zero page and charges nothing,
		// and the write that follows copies it, a second fault (redis
		// reads each new hash table before writing it: 8,503 such reads
		// of 40,499 faults in one run, so about 159 MiB of faults in a
		// 128 MiB cgroup). It must agree with the kernel's count, less
		// the file-backed share it leaves out.
		if query != "" && (float64(total) > 1.15*faulted || float64(total) < 0.5*faulted) {
			t.Errorf("profile%s totals %.1f MiB; the kernel counted %.1f MiB of faults (want 0.5-1.15 times that)", query, float64(total)/mib, faulted/mib)
		}
		if len(got) != 1 || !got[int64(p.PID)] {
			t.Errorf("profile%s holds pids %v, want only redis-server's %d", query, got, p.PID)
		}
	}
}

// A container made and killed between two collections (a pod that runs out
// of memory at start-up), its cgroup removed at once, was never seen with
// processes; its kill still counts, in a container reported gone.
func TestOOMKillOfAContainerNeverSeen(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "10s")
	g := cgtest.New(t, 64*mib)
	pid := runToOOM(t, g, memwork, nil)
	g.Remove(t)

	deadline := time.Now().Add(30 * time.Second)
	for {
		c, ok := a.containers(t)[g.Rel]
		metric := a.metricSum(t, "leakwatch_container_oom_kills_total", fmt.Sprintf("cgroup=%q", g.Rel))
		if ok && c.OOMKills == 1 && metric == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kill of pid %d in %s: container listed %v with oom_kills %d, counter %v; want 1 within 30s",
				pid, g.Rel, ok, c.OOMKills, metric)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startRedis runs redis-server in g, with DEBUG commands on and nothing
// persisted, and returns it and a connection to it (closed when the test
// ends), once it listens (at most 15 s).
func startRedis(t *testing.T, g *cgtest.Group, redis string) (*cgtest.Proc, net.Conn) {
	t.Helper()
	addr := agenttest.FreePort(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	p := g.Start(t, redis, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--enable-debug-command", "yes", "--logfile", filepath.Join(t.TempDir(), "redis.log"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			t.Cleanup(func() { _ = conn.Close() })
			return p, conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server does not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOOMRecord polls the OOM records until the kill of pid has one, for at
// most 20 s.
func (a *agent) waitOOMRecord(t *testing.T, pid int, what string) oomRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if k, ok := a.oomRecords(t)[pid]; ok {
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of the kill of %s (pid %d) within 20s", what, pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
