module github.com/sd-core/sd/plugins/dnssrv/tests/interop/gokit-dnssrv

go 1.21

require (
	github.com/go-kit/kit v0.13.0
	github.com/go-kit/log v0.2.1
)

require github.com/go-logfmt/logfmt v0.5.1 // indirect
