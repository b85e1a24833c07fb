"""The book's apple example (chapter 5.4): MulLayer and AddLayer on Python numbers, then arrays.

    python examples/buy_apple.py [--device SPEC]
"""

import argparse

import xpnet


def buy(apple, apple_num, orange, orange_num, tax):
    mul_apple, mul_orange, add_fruit, mul_tax = (xpnet.MulLayer(), xpnet.MulLayer(),
                                                 xpnet.AddLayer(), xpnet.MulLayer())
    # forward
    apple_price = mul_apple.forward(apple, apple_num)
    orange_price = mul_orange.forward(orange, orange_num)
    all_price = add_fruit.forward(apple_price, orange_price)
    price = mul_tax.forward(all_price, tax)
    # backward
    dall_price, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add_fruit.backward(dall_price)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    dorange, dorange_num = mul_orange.backward(dorange_price)
    return price, (dapple, dapple_num, dorange, dorange_num, dtax)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    price, grads = buy(100, 2, 150, 3, 1.1)
    print(f"price: {price:.1f}")  # 715.0
    print("dApple, dApple_num, dOrange, dOrange_num, dTax:", ", ".join(f"{g:.1f}" for g in grads))

    # the same layers on arrays of any backend: three shops' prices at once
    dev = xpnet.device(args.device)
    apples, oranges = dev.send([100.0, 90.0, 120.0], "float64"), dev.send([150.0, 160.0, 140.0], "float64")
    price, grads = buy(apples, 2, oranges, 3, 1.1)
    print(f"on {dev.name}: prices {xpnet.to_numpy(price)}, dTax {xpnet.to_numpy(grads[-1])}")


if __name__ == "__main__":
    main()
