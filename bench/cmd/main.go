package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sbx-run/sbx"
)

func dirty() string {
	b, _ := os.ReadFile("/proc/vmstat")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "nr_dirty ") {
			return l
		}
	}
	return ""
}

type zero struct{ n int64 }

func (z *zero) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := int64(len(p))
	if k > z.n {
		k = z.n
	}
	for i := range p[:k] {
		p[i] = byte(i)
	}
	z.n -= k
	return int(k), nil
}

func main() {
	ctx := context.Background()
	c, err := sbx.DefaultClient()
	if err != nil {
		panic(err)
	}
	sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Resources{CPUMillis: 2000, MemoryBytes: 4 << 30})
	if err != nil {
		panic(err)
	}
	defer sb.Delete(context.Background())
	sb.Wait(ctx)
	for round := 0; round < 3; round++ {
		t := time.Now()
		if _, err := sb.WriteFileFrom(ctx, "/tmp/b.bin", &zero{1 << 30}, 0o644); err != nil {
			panic(err)
		}
		w := time.Since(t)
		sb.ReadFileTo(ctx, "/tmp/b.bin", io.Discard)
		fmt.Println("round", round, "write", w, "after read:", dirty())
		sb.Remove(ctx, "/tmp/b.bin", false)
		for i := 0; i < 6; i++ {
			fmt.Println("  after remove", i*200, "ms:", dirty())
			time.Sleep(200 * time.Millisecond)
		}
	}
}
