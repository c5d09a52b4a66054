// Command gowork is the Go workload of leakwatch's tests: it reads commands
// on stdin (so a test can move it into a cgroup first) and answers a line
// each.
//
//	leak N   keep N more KiB alive in retainBytes, touching every page
//	sleepy N leak N MiB, 1 MiB at a time with a 1 ms sleep between, while
//	         four other goroutines sleep; what was at the bottom of
//	         time.Sleep's frame is left in retainBytes's frame
//	nop      do nothing; answers once start-up is over
//	exit     exit 0
package main

import (
	"bufio"
	"fmt"
	"os"
	"sync"
	"time"
)

var retained [][]byte

//go:noinline
func retainBytes(kib int) {
	b := make([]byte, kib<<10)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	retained = append(retained, b)
}

var sleepersOnce sync.Once

func sleepy(mib int) {
	sleepersOnce.Do(func() {
		for range 4 {
			go func() {
				for {
					time.Sleep(time.Millisecond)
				}
			}()
		}
	})
	for range mib {
		retainBytes(1024)
		time.Sleep(time.Millisecond)
	}
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var cmd string
		var n int
		_, _ = fmt.Sscan(sc.Text(), &cmd, &n) // commands without a number leave n at 0
		switch cmd {
		case "leak":
			retainBytes(n)
			fmt.Println("ok")
		case "sleepy":
			sleepy(n)
			fmt.Println("ok")
		case "nop":
			fmt.Println("ok")
		case "exit":
			return
		default:
			fmt.Println("err unknown command")
		}
	}
}
