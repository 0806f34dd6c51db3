"""Fixtures for the shop tests: a local Stripe stub, an app wired to it, products and lots,
and a look into the village books."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tests.conftest import make_test_app
from tests.shop.stripe_stub import StripeStub, sign

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
def stripe_stub():
    stub = StripeStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def stripe_settings(settings, stripe_stub):
    return replace(
        settings,
        stripe_secret_key="sk_test_stub",
        stripe_publishable_key="pk_test_stub",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_stub.url,
        public_base_url="http://localhost",
    )


@pytest.fixture
def stripe_app(app, stripe_settings):
    """The app with Stripe configured (same test database; ``app`` wipes it afterwards)."""
    application = make_test_app(stripe_settings)
    yield application
    from core.web import EXT

    application.extensions[EXT]["db"].engine.dispose()


@pytest.fixture
def stripe_client(stripe_app):
    return stripe_app.test_client()


def post_event(
    client, evt: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None, signature=None
):
    body = json.dumps(evt).encode()
    header = signature if signature is not None else sign(body, secret, timestamp)
    return client.post(
        "/stripe/webhook", data=body, headers={"Stripe-Signature": header}, content_type="application/json"
    )


class Shop:
    """Builders for catalogue data over a session (committed, so a live server sees them)."""

    def __init__(self, session):
        self.session = session

    def household(self, code: str = "ZZ001", name: str = "赵建国"):
        from coop.models import Household

        h = Household(code=code, head_name=name)
        self.session.add(h)
        self.session.commit()
        return h

    def product(
        self,
        slug: str = "yellow-peach",
        *,
        price: int = 690,
        unit: str = "jin",
        name_zh: str = "黄桃",
        name_en: str = "Yellow peaches",
        stock=(),
        consignment: bool = False,
        commission: int = 10,
        household=None,
        category=None,
        **kwargs,
    ):
        from shop.models import Product, ProductSupplier, ProductTerms

        p = Product(
            slug=slug,
            name_zh=name_zh,
            name_en=name_en,
            unit=unit,
            price_fen=price,
            consignment=consignment,
            category_id=category.id if category else None,
            **kwargs,
        )
        self.session.add(p)
        self.session.flush()
        if consignment:
            self.session.add(ProductTerms(product_id=p.id, commission_pct=commission))
        if household is not None:
            self.session.add(ProductSupplier(product_id=p.id, household_id=household.id))
        for i, qty in enumerate(stock):
            self.lot(p, qty, days_ago=len(stock) - i, household=household)
        self.session.commit()
        return p

    def lot(self, product, qty, *, days_ago: int = 1, household=None):
        from shop.catalog import add_stock

        lot = add_stock(
            self.session,
            product,
            Decimal(str(qty)),
            household_id=household.id if household else None,
            harvested_on=date.today() - timedelta(days=days_ago),
        )
        self.session.commit()
        return lot

    def category(self, slug: str = "fruit", zh: str = "水果", en: str = "Fruit"):
        from shop.models import Category

        c = Category(slug=slug, name_zh=zh, name_en=en)
        self.session.add(c)
        self.session.commit()
        return c

    def stock(self, product) -> Decimal:
        from shop.catalog import stock_of

        self.session.expire_all()
        return stock_of(self.session, product.id)


@pytest.fixture
def shop(session):
    return Shop(session)


class Books:
    """Read the village books the shop posts into."""

    def __init__(self, session):
        self.session = session

    def vouchers(self, source_prefix: str = ""):
        from coop.models import Voucher

        self.session.expire_all()
        stmt = select(Voucher).where(Voucher.source == "shop").order_by(Voucher.id)
        return [v for v in self.session.scalars(stmt) if v.source_ref.startswith(source_prefix)]

    def balance(self, *, code: str | None = None, key: str | None = None) -> int:
        """Debit minus credit of an account (by code or key), over every voucher."""
        from coop.models import Account, VoucherLine

        self.session.expire_all()
        account = self.session.scalar(
            select(Account).where(Account.key == key) if key else select(Account).where(Account.code == code)
        )
        if account is None:
            return 0
        debit, credit = self.session.execute(
            select(
                func.coalesce(func.sum(VoucherLine.debit), 0), func.coalesce(func.sum(VoucherLine.credit), 0)
            ).where(VoucherLine.account_id == account.id)
        ).one()
        return int(debit) - int(credit)

    def prefix_balance(self, prefix: str) -> int:
        """Debit minus credit of every account whose code starts with ``prefix``."""
        from coop.models import Account, VoucherLine

        self.session.expire_all()
        debit, credit = self.session.execute(
            select(
                func.coalesce(func.sum(VoucherLine.debit), 0), func.coalesce(func.sum(VoucherLine.credit), 0)
            )
            .join(Account, Account.id == VoucherLine.account_id)
            .where(Account.code.like(prefix + "%"))
        ).one()
        return int(debit) - int(credit)

    def assert_balanced(self) -> None:
        from coop.models import VoucherLine

        self.session.expire_all()
        for v in self.vouchers():
            assert sum(ln.debit for ln in v.lines) == sum(ln.credit for ln in v.lines), v.summary
        debit, credit = self.session.execute(
            select(
                func.coalesce(func.sum(VoucherLine.debit), 0), func.coalesce(func.sum(VoucherLine.credit), 0)
            )
        ).one()
        assert debit == credit
        from coop.chain import verify_chain

        result = verify_chain(self.session)  # the shop's postings and accounts are in the chain too
        assert result.ok, result.problems


@pytest.fixture
def books(session):
    return Books(session)
