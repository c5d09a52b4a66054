// Command prober asks an agent's /healthz every period until its time is
// up, and prints one line per probe: the latency in nanoseconds, or "fail"
// and the reason. The storm runs it as a process of its own, as a kubelet
// probes from outside the scrapers: a probe inside the scrapers' process
// waits on that process's scheduler behind dozens of busy goroutines, and
// measures them rather than the agent.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	url := flag.String("url", "", "the URL to probe")
	every := flag.Duration("every", 100*time.Millisecond, "time between probes")
	timeout := flag.Duration("timeout", 10*time.Second, "bound on one probe")
	duration := flag.Duration("duration", time.Minute, "how long to probe")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "prober: -url is required")
		os.Exit(2)
	}
	client := &http.Client{Timeout: *timeout}
	for end := time.Now().Add(*duration); time.Now().Before(end); time.Sleep(*every) {
		start := time.Now()
		code, err := get(client, *url)
		took := time.Since(start)
		switch {
		case err != nil:
			fmt.Printf("fail %v\n", err)
		case code != http.StatusOK:
			fmt.Printf("fail HTTP %d\n", code)
		default:
			fmt.Println(took.Nanoseconds())
		}
	}
}

func get(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}
