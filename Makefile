.PHONY: test demo install lint

install:
	scripts/bootstrap.sh

test:
	scripts/test.sh

demo:
	scripts/demo.sh
