from core import recovery


def test_codes_are_distinct_and_well_formed():
    codes = recovery.generate()
    assert len(codes) == recovery.COUNT == len(set(codes))
    for c in codes:
        assert len(c) == 19 and c.count("-") == 3
        assert recovery.normalise(c) == c.replace("-", "")


def test_hash_is_salted_and_matches_typing_variants():
    code = recovery.generate(1)[0]
    h1, h2 = recovery.hash_code(code), recovery.hash_code(code)
    assert h1 != h2 and code not in h1  # a salt per code: equal codes do not hash alike
    for typed in (code, code.upper(), code.replace("-", ""), f"  {code} ", code.replace("-", " ")):
        assert recovery.matches(typed, h1), typed
    other = recovery.generate(1)[0]
    assert not recovery.matches(other, h1)


def test_what_is_not_a_code():
    for text in (
        "",
        "123456",
        "abcd-efgh-jkmn-pqr",
        "abcd-efgh-jkmn-pqrst",
        "abcd-efgh-jkmn-pqr0",
        "abcd-efgh-jkmn-pqr1",
        "abcd-efgh-jkmn-pqrl",
    ):
        assert recovery.normalise(text) is None, text
        assert not recovery.matches(text, "salt$digest")
    assert not recovery.matches("abcd-efgh-jkmn-pqrs", "no-dollar")
