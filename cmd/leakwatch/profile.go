package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/leakwatch/leakwatch/pkg/server"
)

type profileConfig struct {
	Client    clientFlags
	Type      string
	Seconds   int
	Output    string
	Container string
}

func (c profileConfig) Validate() error {
	switch {
	case c.Container == "":
		return errors.New("no CONTAINER given: an id, a container name or a cgroup path (see `leakwatch top`)")
	case c.Type != "inuse" && c.Type != "faults":
		return fmt.Errorf("--type %q: must be inuse or faults", c.Type)
	case c.Seconds < 0:
		return errors.New("--seconds must not be negative")
	}
	return nil
}

func runProfile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg profileConfig
	fs := newFlagSet("profile", "profile [flags] CONTAINER", stderr)
	cfg.Client.register(fs)
	fs.StringVar(&cfg.Type, "type", "inuse", "inuse (outstanding memory by allocating stack) or faults (memory faulted in, by stack)")
	fs.IntVar(&cfg.Seconds, "seconds", 0, "growth over the last `N` seconds instead of the current state")
	fs.StringVar(&cfg.Output, "o", "", "`FILE` to write (default: the name the agent gives, in this directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("one CONTAINER at a time; got %d", fs.NArg())
	}
	cfg.Container = fs.Arg(0)
	if err := cfg.Validate(); err != nil {
		return err
	}
	cl, err := cfg.Client.client()
	if err != nil {
		return err
	}
	list, err := cl.containers(ctx)
	if err != nil {
		return err
	}
	c, err := find(list, cfg.Container)
	if err != nil {
		return err
	}
	q := url.Values{"type": {cfg.Type}}
	if cfg.Seconds > 0 {
		q.Set("seconds", strconv.Itoa(cfg.Seconds))
	}
	resp, err := cl.get(ctx, "/api/v1/containers/"+url.PathEscape(c.ID)+"/profile?"+q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out := cfg.Output
	if out == "" {
		out = "leakwatch-" + c.ID + ".pb.gz"
		if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
			out = filepath.Base(params["filename"])
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes), the %s profile of %s\nread it with: go tool pprof -top %s\n", out, n, cfg.Type, c.name(), out)
	if cfg.Type == "inuse" && cfg.Seconds > 0 {
		fmt.Fprintf(stdout, "(what was released in the window: go tool pprof -top -sample_index=released_space %s)\n", out)
	}
	if since, err := time.Parse(time.RFC3339, resp.Header.Get(server.InuseSinceHeader)); err == nil {
		fmt.Fprintf(stderr, "note: the agent traces mappings only since %s (%v ago; --tracing=auto escalates on a leak verdict or an inuse request like this one): what was mapped before is not in this profile; ask again later for more\n",
			since.Local().Format(time.DateTime), time.Since(since).Truncate(time.Second))
	}
	return nil
}
