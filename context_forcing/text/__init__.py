from context_forcing.text.attributes import AttributeEncoder

__all__ = ["AttributeEncoder"]
