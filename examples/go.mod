module github.com/kconsumer/kconsumer/examples

go 1.26

require github.com/kconsumer/kconsumer v0.0.0

replace github.com/kconsumer/kconsumer => ../
