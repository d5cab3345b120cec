// Command gokit-dnssrv discovers a service the way a Go service built with go-kit does:
// through go-kit's DNS SRV instancer (github.com/go-kit/kit/sd/dnssrv), whose lookups here go
// to one name server through Go's own resolver. It prints one JSON object per line for each
// event the instancer sends: {"instances": ["target.:port", ...], "addresses": ["ip:port", ...]}
// (both sorted; the addresses are the targets' A/AAAA records, as a go-kit factory dialling
// an instance would find them) or {"error": "..."}.
//
// The tests of sd-dnssrv build and run it to check that Go peers read our registrations.
//
//	gokit-dnssrv -server 127.0.0.1:53 -name _web._tcp.example.com [-refresh 200ms]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/dnssrv"
	"github.com/go-kit/log"
)

type line struct {
	Instances []string `json:"instances"`
	Addresses []string `json:"addresses"`
	Error     string   `json:"error,omitempty"`
}

func main() {
	server := flag.String("server", "127.0.0.1:53", "the name server to ask (host:port)")
	name := flag.String("name", "", "the SRV name to discover")
	refresh := flag.Duration("refresh", 200*time.Millisecond, "go-kit's fixed lookup interval")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "gokit-dnssrv: -name is required")
		os.Exit(2)
	}

	resolver := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, network, *server)
		},
	}
	lookup := func(service, proto, name string) (string, []*net.SRV, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return resolver.LookupSRV(ctx, service, proto, name)
	}
	logger := log.NewLogfmtLogger(os.Stderr)
	instancer := dnssrv.NewInstancerDetailed(*name, time.NewTicker(*refresh), lookup, logger)
	defer instancer.Stop()

	events := make(chan sd.Event, 16)
	instancer.Register(events)
	defer instancer.Deregister(events)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	out := json.NewEncoder(os.Stdout)
	for {
		select {
		case event := <-events:
			record := line{Instances: append([]string{}, event.Instances...), Addresses: []string{}}
			sort.Strings(record.Instances)
			if event.Err != nil {
				record.Error = event.Err.Error()
			}
			for _, instance := range record.Instances {
				host, port, err := net.SplitHostPort(instance)
				if err != nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				ips, err := resolver.LookupHost(ctx, host)
				cancel()
				if err != nil {
					record.Error = err.Error()
					continue
				}
				for _, ip := range ips {
					record.Addresses = append(record.Addresses, net.JoinHostPort(ip, port))
				}
			}
			sort.Strings(record.Addresses)
			if err := out.Encode(record); err != nil {
				os.Exit(1)
			}
		case <-stop:
			return
		}
	}
}
