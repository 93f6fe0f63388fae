package pdsidecar

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkAccessToken is one read of the always-current object: an atomic
// load, no I/O, no lock (goal < 1 µs).
func BenchmarkAccessToken(b *testing.B) {
	source, err := NewCredentialsSource(context.Background(), serve(b, newFake("t1")), ref)
	if err != nil {
		b.Fatal(err)
	}
	defer source.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := source.AccessToken(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSourceMemory reports the heap and goroutines one held source
// costs, over 100 sources on one connection. The fake sidecar runs in this
// process, so its side of each stream is counted too: an upper bound (run with
// -benchtime 1x; bench/clients.py measures against a real sidecar).
func BenchmarkSourceMemory(b *testing.B) {
	const sources = 100
	client := serve(b, newFake("t1"))
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		held := make([]*CredentialsSource, sources)
		for i := range held {
			source, err := NewCredentialsSource(context.Background(), client, ref)
			if err != nil {
				b.Fatal(err)
			}
			held[i] = source
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/sources, "heap-bytes/source")
		b.ReportMetric(float64(runtime.NumGoroutine())/sources, "goroutines/source")
		for _, source := range held {
			_ = source.Close()
		}
	}
}
