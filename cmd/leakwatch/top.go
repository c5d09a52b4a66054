package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

type topConfig struct {
	Client   clientFlags
	Interval time.Duration
	Limit    int
	Once     bool
}

func (c topConfig) Validate() error {
	if c.Interval < 500*time.Millisecond {
		return errors.New("--interval must be at least 500ms")
	}
	if c.Limit < 1 {
		return errors.New("--limit must be at least 1")
	}
	return nil
}

func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg topConfig
	fs := newFlagSet("top", "top [flags]", stderr)
	cfg.Client.register(fs)
	fs.DurationVar(&cfg.Interval, "interval", 2*time.Second, "time between refreshes")
	fs.IntVar(&cfg.Limit, "limit", 30, "containers shown")
	fs.BoolVar(&cfg.Once, "once", false, "print one table and exit (the default when output is not a terminal)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cl, err := cfg.Client.client()
	if err != nil {
		return err
	}
	live := !cfg.Once && isTerminal(stdout)
	for {
		list, err := cl.containers(ctx)
		if err != nil {
			return err
		}
		if live {
			// Home and clear: refresh in place.
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
			fmt.Fprintf(stdout, "leakwatch top — %s — %s — Ctrl-C to quit\n\n", cl.base, time.Now().Format(time.TimeOnly))
		}
		printTop(stdout, list, cfg.Limit)
		if !live {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.Interval):
		}
	}
}

// topRow lays a row out in fixed widths, each as wide as its column's
// widest value (bytesString is at most 9 characters, a time to limit is
// capped at 9, "gone (was LEAK)" is 15), so that columns stay put between
// refreshes; the container name, the one value of free length, comes last.
const topRow = "%-10s  %9s  %9s  %10s  %4s  %9s  %4s  %-15s  %s\n"

// printTop prints the live containers ordered by growth, as the API returns
// them, then the gone ones, marked: a gone container has no current figures
// to show, only its OOM kills and whether it went leaking.
func printTop(w io.Writer, list []apiContainer, limit int) {
	// The API lists gone ones last already; an agent older than that does
	// not, and a gone one must never head the table.
	list = slices.Clone(list)
	slices.SortStableFunc(list, func(a, b apiContainer) int {
		switch {
		case a.Gone == b.Gone:
			return 0
		case a.Gone:
			return 1
		}
		return -1
	})
	fmt.Fprintf(w, topRow, "ID", "MEMORY", "LIMIT", "GROWTH/s", "CONF", "TO LIMIT", "OOM", "LEAK", "CONTAINER")
	for i, c := range list {
		if i == limit {
			fmt.Fprintf(w, "… %d more\n", len(list)-limit)
			break
		}
		limitS, ttl := "-", "-"
		if c.Limit > 0 {
			limitS = bytesString(c.Limit)
		}
		if c.TimeToLimit != nil {
			ttl = ">99h"
			if secs := *c.TimeToLimit; secs < 100*3600 {
				ttl = time.Duration(secs * float64(time.Second)).Round(time.Second).String()
			}
		}
		growth := "-"
		if c.Growth != 0 {
			sign := ""
			g := c.Growth
			if g < 0 {
				sign, g = "-", -g
			}
			growth = sign + bytesString(uint64(g))
		}
		mem, conf, leak := bytesString(c.Memory), fmt.Sprintf("%.2f", c.Confidence), ""
		if c.Leaking {
			leak = "LEAK"
		}
		if c.Gone {
			mem, limitS, growth, conf, ttl, leak = "-", "-", "-", "-", "-", "gone"
			if c.WasLeaking {
				leak = "gone (was LEAK)"
			}
		}
		fmt.Fprintf(w, topRow, c.ID, mem, limitS, growth, conf, ttl,
			strconv.FormatUint(c.OOMKills, 10), leak, shorten(c.name(), 60))
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
